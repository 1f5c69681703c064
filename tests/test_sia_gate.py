"""The late-step gate: its rule by noise level, and which steps change in real sampler runs."""
import pytest
import torch

from comfyui_personalvideo.sia import SIAError, apply_sia
from comfyui_personalvideo.sia.gate import GateState, step_of, steps_on
from comfyui_personalvideo.sia.noise_position import noise_positions

import sampling
from gate_recording import model_sampling_of

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why


def _lcm(model):
    import nodes

    return nodes.NODE_CLASS_MAPPINGS["ModelSamplingDiscrete"]().patch(model, "lcm", False)[0]


def test_positions_are_the_inverse_of_the_hosts_percent_to_sigma(tiny_model):
    ms = model_sampling_of(tiny_model)
    percents = [0.05, 0.25, 0.5, 0.75, 0.9, 0.99]
    sigmas = torch.tensor([ms.percent_to_sigma(p) for p in percents])
    assert noise_positions(sigmas, ms) == pytest.approx(percents, abs=1e-4)
    assert noise_positions(torch.tensor([1e4, 0.0]), ms) == [0.0, 1.0]


@pytest.mark.parametrize("scheduler,steps,expected", [
    ("normal", 4, [3]), ("normal", 6, [4, 5]), ("normal", 8, [6, 7]), ("normal", 20, list(range(15, 20))),
    ("normal", 25, list(range(18, 25))),
    ("sgm_uniform", 4, [3]), ("sgm_uniform", 6, [5]), ("sgm_uniform", 8, [6, 7]),
    ("sgm_uniform", 20, list(range(15, 20))), ("sgm_uniform", 25, list(range(19, 25))),
])
def test_the_documented_steps_for_start_075(tiny_model, scheduler, steps, expected):
    """The table of adapted steps in docs/nodes.md (normal is exactly the old i/(n-1) >= 0.75 rule)."""
    schedule = sampling.schedule(tiny_model, scheduler, steps)
    assert steps_on(schedule, model_sampling_of(tiny_model), 0.75) == expected
    lcm = _lcm(tiny_model)
    assert steps_on(sampling.schedule(lcm, scheduler, steps), model_sampling_of(lcm), 0.75) == expected


def test_start_0_is_every_step_and_start_1_only_the_final_one(tiny_model):
    ms = model_sampling_of(tiny_model)
    for scheduler in ("normal", "sgm_uniform", "karras"):
        schedule = sampling.schedule(tiny_model, scheduler, 8)
        assert steps_on(schedule, ms, 0.0) == list(range(8))
        assert steps_on(schedule, ms, 1.0) == [7]
        assert steps_on(schedule[:5], ms, 1.0) == []          # a first pass that leaves noise has no final step


def test_a_split_schedule_adapts_the_steps_of_the_whole(tiny_model):
    ms = model_sampling_of(tiny_model)
    for scheduler in ("normal", "karras", "sgm_uniform"):
        schedule = sampling.schedule(tiny_model, scheduler, 20)
        whole = steps_on(schedule, ms, 0.75, 0.95)
        for cut in (5, 10, 15, 17):
            parts = steps_on(schedule[:cut + 1], ms, 0.75, 0.95) + [cut + i for i in
                                                                      steps_on(schedule[cut:], ms, 0.75, 0.95)]
            assert parts == whole, (scheduler, cut)


def test_step_of_places_a_call_by_noise_level():
    schedule = torch.tensor([14.6, 4.08, 1.62, 0.695, 0.0])
    assert [step_of(s, schedule) for s in (14.6, 4.08, 1.62, 0.695)] == [0, 1, 2, 3]
    assert step_of(3.0, schedule) == 1       # between 4.08 and 1.62
    assert step_of(20.0, schedule) == 0 and step_of(0.3, schedule) == 3


@pytest.mark.parametrize("strength,start,end,fragment", [
    (1.0, 0.75, 1.5, "end_percent must be between"),
    (1.0, 0.8, 0.5, "is after end_percent"),
    (1.0, -0.1, 1.0, "start_percent must be between"),
])
def test_settings_are_checked_before_anything_is_patched(tiny_model, make_adapter, strength, start, end, fragment):
    with pytest.raises(SIAError, match=fragment):
        apply_sia(tiny_model, make_adapter(tiny_model), strength, start, end)
    assert tiny_model.object_patches == {}


def _changed_steps(model, patched, conds, **kw):
    _, base = sampling.sample(model, *conds, **kw)
    _, adapted = sampling.sample(patched, *conds, **kw)
    assert len(base) == len(adapted) == kw["steps"]
    return [i for i, (a, b) in enumerate(zip(base, adapted)) if not torch.equal(a, b)]


@pytest.mark.parametrize("steps,sampler,scheduler,start,end,expected", [
    (4, "lcm", "sgm_uniform", 0.75, 1.0, [3]),
    (20, "euler", "normal", 0.75, 1.0, [15, 16, 17, 18, 19]),
    (4, "lcm", "sgm_uniform", 0.0, 1.0, [0, 1, 2, 3]),
    (10, "heun", "karras", 0.75, 1.0, None),
    (10, "dpmpp_2s_ancestral", "normal", 0.75, 1.0, [7, 8, 9]),
    (10, "euler", "normal", 0.3, 0.7, [3, 4, 5, 6, 7, 8, 9]),
])
def test_denoised_output_changes_from_the_first_gated_step(tiny_model, conds, make_adapter,
                                                           steps, sampler, scheduler, start, end, expected):
    """Each step's denoised output changes from the first adapted step on (a later step inherits the change
    through the latent), never before: in particular a second-order sampler's corrector of the step before
    is not adapted."""
    patched, _, _ = apply_sia(tiny_model, make_adapter(tiny_model), 1.0, start, end)
    changed = _changed_steps(tiny_model, patched, conds, steps=steps, sampler_name=sampler,
                             scheduler=scheduler, cfg=1.5)
    first = steps_on(sampling.schedule(tiny_model, scheduler, steps), model_sampling_of(tiny_model), start, end)[0]
    assert changed == (expected if expected is not None else list(range(first, steps)))
    assert changed[0] == first


def test_gate_follows_the_run_schedule_with_lcm_model_sampling(tiny_model, conds, make_adapter):
    """LCM-distilled model sampling puts the last sigma above percent_to_sigma(0.75); the gate still opens."""
    lcm = _lcm(tiny_model)
    sigmas = sampling.schedule(lcm, "sgm_uniform", 4)
    threshold = model_sampling_of(lcm).percent_to_sigma(0.75)
    assert float(sigmas[3]) > threshold  # a sigma-threshold gate would miss the last step here
    assert noise_positions(sigmas[:4], model_sampling_of(lcm)) == pytest.approx([0.0, 0.25, 0.5, 0.75], abs=1e-4)
    for start in (0.75, 0.6, 1.0):
        patched, _, _ = apply_sia(lcm, make_adapter(lcm), 1.0, start)
        assert _changed_steps(lcm, patched, conds, steps=4, cfg=1.0) == [3], start


def test_strength_zero_is_the_unadapted_model_without_any_patch(tiny_model, conds, make_adapter):
    patched, _, _ = apply_sia(tiny_model, make_adapter(tiny_model), 0.0, 0.0)
    assert patched.object_patches == {}
    assert "patches" not in patched.model_options.get("transformer_options", {})
    assert _changed_steps(tiny_model, patched, conds, steps=4, cfg=1.5) == []


def test_original_model_samples_bit_identically_after_the_patched_one_is_gone(tiny_model, conds, make_adapter):
    before, steps_before = sampling.sample(tiny_model, *conds, steps=4, cfg=1.5)
    patched, _, _ = apply_sia(tiny_model, make_adapter(tiny_model), 1.0, 0.0)
    adapted, _ = sampling.sample(patched, *conds, steps=4, cfg=1.5)
    assert not torch.equal(adapted, before)
    del patched
    after, steps_after = sampling.sample(tiny_model, *conds, steps=4, cfg=1.5)
    assert torch.equal(before, after)
    assert all(torch.equal(a, b) for a, b in zip(steps_before, steps_after))
    assert tiny_model.object_patches == {}
    assert "patches" not in tiny_model.model_options.get("transformer_options", {})


def test_no_host_function_is_wrapped(tiny_model, conds, make_adapter):
    import comfy.sample
    import comfy.samplers

    before = (comfy.samplers.sample, comfy.sample.sample, comfy.sample.sample_custom, comfy.samplers.KSampler.sample)
    patched, _, _ = apply_sia(tiny_model, make_adapter(tiny_model), 1.0, 0.75)
    sampling.sample(patched, *conds, steps=4, cfg=1.5)
    assert (comfy.samplers.sample, comfy.sample.sample, comfy.sample.sample_custom,
            comfy.samplers.KSampler.sample) == before


def test_without_a_schedule_the_adapter_stays_off_and_says_so_once(tiny_model, caplog):
    state = GateState(0.75, 1.0, tiny_model.model)
    with caplog.at_level("WARNING", logger="PersonalVideo"):
        state.observe({"sigmas": torch.tensor([0.7])})
        state.observe({"sigmas": torch.tensor([0.3])})
    assert state.active is False
    assert sum("gave no schedule" in r.getMessage() for r in caplog.records) == 1
    every = GateState(0.0, 1.0, tiny_model.model)
    every.observe({"sigmas": torch.tensor([0.7])})
    assert every.active is True


class _GpuSchedule(torch.Tensor):
    """A schedule as a sampler holds it on a GPU: it says it is there, and counts each read of its values to the
    host (on a GPU each one waits for all the work queued before it); ``cpu()`` gives a plain CPU tensor, as it
    does from a GPU."""

    reads = 0
    _READS = {torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__, torch.Tensor.item,
              torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu}

    @property
    def device(self):
        return torch.device("cuda", 0)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in cls._READS:
            cls.reads += 1
        out = super().__torch_function__(func, types, args, kwargs)
        return out.as_subclass(torch.Tensor) if func is torch.Tensor.cpu else out


def test_a_schedule_on_a_gpu_is_read_for_its_first_call_only(tiny_model):
    """The gate places each model call in the run's schedule; a schedule on a GPU is read to the host when the
    gate first meets it, not at every model call after (each read would stall the host until the GPU caught up,
    once per step)."""
    schedule = torch.tensor([14.6, 4.08, 1.62, 0.695, 0.0]).as_subclass(_GpuSchedule)
    _GpuSchedule.reads = 0
    state = GateState(0.75, 1.0, tiny_model.model)
    decisions, reads = [], []
    for level in (14.6, 4.08, 1.62, 0.695):
        state.observe({"sigmas": torch.tensor([level]), "sample_sigmas": schedule})
        decisions.append(state.active)
        reads.append(_GpuSchedule.reads)
    assert decisions == [False, False, False, True]
    assert reads[0] > 0 and reads == [reads[0]] * 4, reads


def test_the_gate_decides_once_per_model_evaluation(tiny_model):
    schedule = torch.tensor([14.6, 4.08, 1.62, 0.695, 0.0])
    state = GateState(0.75, 1.0, tiny_model.model)
    last, first = torch.tensor([0.695]), torch.tensor([14.6])
    state.observe({"sigmas": last, "sample_sigmas": schedule})
    assert state.active
    state.observe({"sigmas": first, "sample_sigmas": schedule})
    assert not state.active
    state.observe({"sigmas": first, "sample_sigmas": torch.tensor([0.695, 0.0])})   # same evaluation: kept
    assert not state.active
