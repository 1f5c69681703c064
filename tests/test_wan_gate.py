"""The late-step gate on core Wan: every model call recorded, for the samplers, schedulers and shifts Wan users run.

Wan samples with flow matching (sigma from 1 to 0, shifted: sigma = shift t /
(1 + (shift - 1) t)); the last quarter is sigma <= percent_to_sigma(0.75) of the
model sampling in use (0.727 at Wan 2.1's default shift 8).  Each call is
recorded with its sigma and whether the adapter acted (its output compared with
a separate plain model's, tests/gate_recording.py); each step must be all-on or
all-off and the on-steps exactly the rule's.  Wan 2.2 A14B runs two experts in
two KSamplerAdvanced passes over one schedule: the adapter on the low-noise
expert adapts exactly the last quarter, on the high-noise expert nothing.
"""
import pytest
import torch

import wan_models

wan_models.skip_without_wan()

import comfy.samplers  # noqa: E402
import nodes  # noqa: E402

from comfyui_personalvideo.sia import apply_sia  # noqa: E402
from comfyui_personalvideo.sia.noise_position import noise_positions  # noqa: E402

import gate_recording  # noqa: E402

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why


def model_sampling_of(model):
    """The model sampling a run of ``model`` uses: its own patch, else the original of the shared BaseModel (a
    clone with a ModelSamplingSD3 patch may have left its sampling on the BaseModel after its run)."""
    return model.get_model_object("model_sampling")



@pytest.fixture(scope="module")
def rig():
    plain = wan_models.tiny_wan_model(seed=0)
    reference = wan_models.tiny_wan_model(seed=0)    # same weights, never patched
    return plain, reference, wan_models.random_wan_adapter(plain)


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 8.0, 12.0])
def test_positions_are_the_inverse_of_the_hosts_percent_to_sigma_at_every_shift(rig, shift):
    sampling = model_sampling_of(wan_models.with_shift(rig[0], shift))
    percents = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999]
    sigmas = torch.tensor([float(sampling.percent_to_sigma(p)) for p in percents])
    assert noise_positions(sigmas, sampling) == pytest.approx(percents, abs=1e-6)
    assert noise_positions(torch.tensor([0.0, 1.0]), sampling) == [1.0, 0.0]


def _recorded(rig, model, sampler, sigmas, start=0.75, end=1.0, cfg=1.5):
    plain, reference, adapter = rig
    patched = apply_sia(model, adapter, 1.0, start, end)[0]
    watched, recorder = gate_recording.recording(patched, reference)
    with torch.inference_mode():
        wan_models.sample(watched, sigmas=sigmas.clone(), callback=recorder.callback, cfg=cfg,
                          sampler=sampler) if isinstance(sampler, str) else _custom(watched, sampler, sigmas,
                                                                                      recorder, cfg)
    return recorder


def _custom(model, sampler, sigmas, recorder, cfg):
    import comfy.sample

    latent = wan_models.empty_wan_latent()["samples"]
    comfy.sample.sample_custom(model, comfy.sample.prepare_noise(latent, 0), cfg, sampler, sigmas.clone(),
                               wan_models.random_text_cond(1), wan_models.random_text_cond(2), latent,
                               callback=recorder.callback, disable_pbar=True, seed=0)


def _schedule(model, scheduler, steps):
    return comfy.samplers.calculate_sigmas(model_sampling_of(model), scheduler, steps)


@pytest.mark.parametrize("sampler_name", comfy.samplers.SAMPLER_NAMES)
def test_every_sampler_adapts_exactly_the_last_quarter_at_wans_default_shift(rig, sampler_name):
    model = rig[0]
    schedule = _schedule(model, "simple", 8)
    expected = gate_recording.expected_steps(schedule, model_sampling_of(model), 0.75, 1.0)
    assert expected == [6, 7]           # sigma 0.727 (= percent_to_sigma(0.75) at shift 8) and 0.533
    on = gate_recording.check_run(_recorded(rig, model, sampler_name, schedule), schedule, sampler_name, expected)
    if sampler_name not in ("dpm_fast", "dpm_adaptive"):   # these two sample on a grid of their own
        assert on == expected


@pytest.mark.parametrize("scheduler", comfy.samplers.SCHEDULER_NAMES)
@pytest.mark.parametrize("shift,steps", [(8.0, 20), (5.0, 4), (3.0, 10), (1.0, 6), (12.0, 30)])
def test_every_scheduler_and_the_shifts_wan_users_run(rig, scheduler, shift, steps):
    """Shift 8 (Wan 2.1 T2V default), 5 (Wan 2.2 TI2V 5B; 4-step speed LoRAs), 3, 1, 12; euler."""
    model = wan_models.with_shift(rig[0], shift)
    schedule = _schedule(model, scheduler, steps)
    expected = gate_recording.expected_steps(schedule, model_sampling_of(model), 0.75, 1.0)
    assert expected and expected[0] > 0
    on = gate_recording.check_run(_recorded(rig, model, "euler", schedule), schedule, "euler", expected)
    assert on == expected


@pytest.mark.parametrize("sampler_name", ["euler", "heun", "dpmpp_2m", "uni_pc"])
def test_end_percent_switches_off_again(rig, sampler_name):
    model = rig[0]
    schedule = _schedule(model, "simple", 10)
    expected = gate_recording.expected_steps(schedule, model_sampling_of(model), 0.3, 0.7)
    assert expected == [3, 4, 5, 6, 7]
    recorder = _recorded(rig, model, sampler_name, schedule, 0.3, 0.7)
    assert gate_recording.check_run(recorder, schedule, sampler_name, expected) == expected


def _advanced(model, add_noise, steps, start, end, leftover, latent, sampler="euler", seed=5):
    return nodes.NODE_CLASS_MAPPINGS["KSamplerAdvanced"]().sample(
        model, "enable" if add_noise else "disable", seed, steps, 1.5, sampler, "simple",
        wan_models.random_text_cond(1), wan_models.random_text_cond(2), latent, start, end,
        "enable" if leftover else "disable")[0]


@pytest.mark.parametrize("sampler", ["euler", "uni_pc", "dpmpp_2m"])
def test_wan22_two_experts_the_low_noise_one_adapts_exactly_the_last_quarter(rig, sampler):
    """Wan 2.2 A14B's split: high-noise expert steps 0-9 of 20 (leftover noise kept), low-noise expert 10-19.
    The identity on the low-noise expert adapts steps 15-19, as an unsplit run on it would; on the high-noise
    expert it would adapt nothing (its steps all lie before 0.75).  Every call of the low-noise pass is on exactly
    when its sigma is at or below percent_to_sigma(0.75)."""
    plain, reference, adapter = rig
    high = wan_models.tiny_wan_model(seed=9)
    low, low_recorder = gate_recording.recording(apply_sia(plain, adapter, 1.0, 0.75)[0], reference)
    high_with_id = apply_sia(high, wan_models.random_wan_adapter(high), 1.0, 0.75)[0]
    high_watched, high_recorder = gate_recording.recording(high_with_id, wan_models.tiny_wan_model(seed=9))
    with torch.inference_mode():
        latent = wan_models.empty_wan_latent()
        first = _advanced(high_watched, True, 20, 0, 10, True, latent, sampler)
        _advanced(low, False, 20, 10, 10000, False, first, sampler)
        split = list(low_recorder.calls)
        low_recorder.clear()
        _advanced(low, True, 20, 0, 10000, False, latent, sampler)
        whole = list(low_recorder.calls)
    schedule = _schedule(plain, "simple", 20)
    on_sigmas = {round(float(schedule[i]), 4) for i in
                 gate_recording.expected_steps(schedule, model_sampling_of(plain), 0.75, 1.0)}
    assert len(on_sigmas) == 5 and max(on_sigmas) <= 0.7273 + 1e-4
    assert high_recorder.calls and not any(acted for _, acted in high_recorder.calls)
    threshold = float(model_sampling_of(plain).percent_to_sigma(0.75))
    assert split and all(acted == (s <= threshold * (1 + 1e-4)) for s, acted in split), split
    if sampler == "uni_pc":   # its second pass evaluates between the schedule's points: placed by noise level
        return
    assert {round(s, 4) for s, acted in split if acted} == on_sigmas
    assert {round(s, 4) for s, acted in whole if acted} == on_sigmas
    assert [(round(s, 4), a) for s, a in split] == [(round(s, 4), a) for s, a in whole[-len(split):]]


def test_a_split_first_pass_without_leftover_noise_adapts_only_what_the_whole_run_adapts(rig):
    plain, reference, adapter = rig
    watched, recorder = gate_recording.recording(apply_sia(plain, adapter, 1.0, 0.75)[0], reference)
    with torch.inference_mode():
        latent = wan_models.empty_wan_latent()
        first = _advanced(watched, True, 20, 0, 16, False, latent)
        first_calls = list(recorder.calls)
        recorder.clear()
        _advanced(watched, False, 20, 16, 10000, False, first)
        second_calls = list(recorder.calls)
    # steps 0-15: step 15 starts at sigma 0.727 = percent_to_sigma(0.75) and is on, though the host ends the pass
    # at 0 there; steps 16-19 all on
    assert [a for _, a in first_calls] == [False] * 15 + [True]
    assert second_calls and all(a for _, a in second_calls)
