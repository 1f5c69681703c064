"""The late-step gate: which steps the adapter acts on, on a real sampler run."""
import pytest
import torch

from comfyui_personalvideo.sia import apply_sia
from comfyui_personalvideo.sia.gate import gate_opens, step_of

import sampling


@pytest.mark.parametrize("steps,start,expected", [
    (4, 0.75, [3]),
    (20, 0.75, [15, 16, 17, 18, 19]),
    (8, 0.75, [6, 7]),
    (4, 0.0, [0, 1, 2, 3]),
    (4, 1.0, [3]),
    (25, 0.5, list(range(12, 25))),
])
def test_gate_rule(steps, start, expected):
    assert [i for i in range(steps) if gate_opens(i, steps, start)] == expected


def test_single_step_run_is_its_last_step():
    assert gate_opens(0, 1, 0.75)


def test_step_of_maps_intermediate_sigmas_to_the_step_they_start_from():
    schedule = torch.tensor([14.6, 4.08, 1.62, 0.695, 0.0])
    assert [step_of(s, schedule)[0] for s in (14.6, 4.08, 1.62, 0.695)] == [0, 1, 2, 3]
    assert step_of(3.0, schedule) == (1, 4)       # heun-style evaluation between 4.08 and 1.62
    assert step_of(0.3, schedule) == (3, 4)


def _changed_steps(model, patched, conds, **kw):
    _, base = sampling.sample(model, *conds, **kw)
    _, adapted = sampling.sample(patched, *conds, **kw)
    assert len(base) == len(adapted) == kw["steps"]
    return [i for i, (a, b) in enumerate(zip(base, adapted)) if not torch.equal(a, b)]


@pytest.mark.parametrize("steps,sampler,scheduler,start,expected", [
    (4, "lcm", "sgm_uniform", 0.75, [3]),
    (20, "euler", "normal", 0.75, [15, 16, 17, 18, 19]),
    (4, "lcm", "sgm_uniform", 0.0, [0, 1, 2, 3]),
])
def test_denoised_output_changes_exactly_at_gated_steps(tiny_model, conds, make_adapter,
                                                        steps, sampler, scheduler, start, expected):
    patched, _, _ = apply_sia(tiny_model, make_adapter(tiny_model), 1.0, start)
    changed = _changed_steps(tiny_model, patched, conds, steps=steps, sampler_name=sampler,
                             scheduler=scheduler, cfg=1.5)
    assert changed == expected


def test_gate_follows_the_run_schedule_with_lcm_model_sampling(tiny_model, conds, make_adapter):
    """AnimateLCM-style model sampling puts the last sigma above percent_to_sigma(0.75); the gate still opens."""
    import nodes

    (lcm,) = nodes.NODE_CLASS_MAPPINGS["ModelSamplingDiscrete"]().patch(tiny_model, "lcm", False)
    sigmas = sampling.schedule(lcm, "sgm_uniform", 4)
    threshold = lcm.object_patches["model_sampling"].percent_to_sigma(0.75)
    assert float(sigmas[3]) > threshold  # a sigma-threshold gate would miss the last step here
    patched, _, _ = apply_sia(lcm, make_adapter(lcm), 1.0, 0.75)
    assert _changed_steps(lcm, patched, conds, steps=4, cfg=1.0) == [3], (sigmas, threshold)


def test_strength_zero_equals_the_unadapted_model(tiny_model, conds, make_adapter):
    patched, _, _ = apply_sia(tiny_model, make_adapter(tiny_model), 0.0, 0.0)
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


def test_without_a_schedule_the_adapter_stays_off_and_says_so_once(caplog):
    from comfyui_personalvideo.sia.gate import GateState

    state = GateState(0.75)
    sigma = torch.tensor([0.7])
    with caplog.at_level("WARNING", logger="PersonalVideo"):
        state.observe({"sigmas": sigma})
        state.observe({"sigmas": torch.tensor([0.3])})
    assert state.active is False
    assert sum("gave no schedule" in r.getMessage() for r in caplog.records) == 1
    every = GateState(0.0)
    every.observe({"sigmas": sigma})
    assert every.active is True


def test_the_gate_decides_once_per_model_evaluation():
    from comfyui_personalvideo.sia.gate import GateState

    schedule = torch.tensor([14.6, 4.08, 1.62, 0.695, 0.0])
    state = GateState(0.75)
    last, first = torch.tensor([0.695]), torch.tensor([14.6])
    state.observe({"sigmas": last, "sample_sigmas": schedule})
    assert state.active
    state.observe({"sigmas": first, "sample_sigmas": schedule})
    assert not state.active
