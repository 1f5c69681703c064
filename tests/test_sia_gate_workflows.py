"""One gate rule across the pieces of a run, through the host's real sampler nodes.

A run split into passes over one schedule (KSamplerAdvanced start/end steps,
SplitSigmas with SamplerCustom / SamplerCustomAdvanced, SplitSigmasDenoise) must
adapt exactly the calls the unsplit run adapts; a low-denoise pass (KSampler
denoise < 1) and custom SIGMAS follow the same rule by noise level.  Every
model call is recorded with its sigma and whether the adapter acted
(tests/gate_recording.py).
"""
import pytest
import torch

import nodes
from comfyui_personalvideo.sia import apply_sia

import gate_recording
import random_adapters
from gate_recording import model_sampling_of
import tiny_models

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why


def _node(name):
    if name not in nodes.NODE_CLASS_MAPPINGS:
        pytest.skip(f"this host has no {name} node")
    return nodes.NODE_CLASS_MAPPINGS[name]()


@pytest.fixture(scope="session")
def rig():
    plain = tiny_models.tiny_sd15_model(seed=0)
    reference = tiny_models.tiny_sd15_model(seed=0)
    adapter = random_adapters.random_adapter(plain)
    conds = tiny_models.random_cond(plain, 1), tiny_models.random_cond(plain, 2)
    return plain, reference, adapter, conds


def _watched(rig, start=0.75, end=1.0):
    plain, reference, adapter, _ = rig
    return gate_recording.recording(apply_sia(plain, adapter, 1.0, start, end)[0], reference)


def _latent():
    return {"samples": torch.zeros(1, 4, 4, 4)}


def _rounded(calls):
    return [(round(sigma, 4), acted) for sigma, acted in calls]


def _ksampler_advanced(model, conds, sampler, steps, start, end, add_noise, leftover, latent):
    positive, negative = conds
    return _node("KSamplerAdvanced").sample(model, "enable" if add_noise else "disable", 5, steps, 1.5, sampler,
                                            "normal", positive, negative, latent, start, end,
                                            "enable" if leftover else "disable")[0]


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2s_ancestral", "dpmpp_2m"])
def test_ksampler_advanced_two_passes_adapt_the_steps_of_the_unsplit_run(rig, sampler):
    conds = rig[3]
    watched, recorder = _watched(rig)
    with torch.inference_mode():
        _ksampler_advanced(watched, conds, sampler, 20, 0, 10000, True, False, _latent())
        whole = list(recorder.calls)
        recorder.clear()
        first = _ksampler_advanced(watched, conds, sampler, 20, 0, 10, True, True, _latent())
        _ksampler_advanced(watched, conds, sampler, 20, 10, 10000, False, False, first)
        split = list(recorder.calls)
    assert _rounded(split) == _rounded(whole)
    sigmas = sorted({round(s, 4) for s, acted in whole if acted}, reverse=True)
    assert len(sigmas) == 5 and all(not acted for s, acted in split[:len(split) // 2])   # steps 16-20 of 20


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2s_ancestral", "dpmpp_2m"])
def test_a_first_pass_without_leftover_noise_adapts_only_what_the_unsplit_run_adapts(rig, sampler):
    """KSamplerAdvanced's default, return_with_leftover_noise=disable: the host ends the first pass (steps 0-9
    of 20) at zero noise, but its last step is a mid-schedule step, not the final one, and stays off as in the
    unsplit run; the second pass adapts the calls the unsplit run adapts (steps 15-19)."""
    conds = rig[3]
    watched, recorder = _watched(rig)
    with torch.inference_mode():
        _ksampler_advanced(watched, conds, sampler, 20, 0, 10000, True, False, _latent())
        whole = list(recorder.calls)
        recorder.clear()
        first = _ksampler_advanced(watched, conds, sampler, 20, 0, 10, True, False, _latent())
        first_calls = list(recorder.calls)
        recorder.clear()
        _ksampler_advanced(watched, conds, sampler, 20, 10, 10000, False, False, first)
        second_calls = list(recorder.calls)
    assert first_calls and not any(acted for _, acted in first_calls)
    assert [acted for _, acted in second_calls] == [acted for _, acted in whole[-len(second_calls):]]
    assert sum(acted for _, acted in second_calls) >= 5


def _schedule(model, steps, scheduler="normal"):
    return _node("BasicScheduler").get_sigmas(model, scheduler, steps, 1.0)[0]


def _sampler_custom(model, conds, sampler, sigmas, latent, add_noise=True):
    positive, negative = conds
    return _node("SamplerCustom").sample(model, add_noise, 5, 1.5, positive, negative,
                                         _node("KSamplerSelect").get_sampler(sampler)[0], sigmas, latent)[0]


def _sampler_custom_advanced(model, conds, sampler, sigmas, latent, add_noise=True):
    positive, negative = conds
    noise = (_node("RandomNoise").get_noise(5) if add_noise else _node("DisableNoise").get_noise())[0]
    guider = _node("CFGGuider").get_guider(model, positive, negative, 1.5)[0]
    return _node("SamplerCustomAdvanced").sample(noise, guider, _node("KSamplerSelect").get_sampler(sampler)[0],
                                                 sigmas, latent)[0]


@pytest.mark.parametrize("run", [_sampler_custom, _sampler_custom_advanced], ids=["SamplerCustom",
                                                                                  "SamplerCustomAdvanced"])
@pytest.mark.parametrize("split", ["SplitSigmas", "SplitSigmasDenoise"])
@pytest.mark.parametrize("sampler", ["euler", "heun", "dpm_2_ancestral"])
def test_split_sigmas_passes_adapt_the_steps_of_the_unsplit_run(rig, run, split, sampler):
    plain, conds = rig[0], rig[3]
    watched, recorder = _watched(rig)
    with torch.inference_mode():
        sigmas = _schedule(plain, 12)
        high, low = (_node(split).get_sigmas(sigmas, 7) if split == "SplitSigmas"
                     else _node(split).get_sigmas(sigmas, 0.4))
        run(watched, conds, sampler, sigmas, _latent())
        whole = list(recorder.calls)
        recorder.clear()
        first = run(watched, conds, sampler, high, _latent())
        run(watched, conds, sampler, low, first, add_noise=False)
        split_calls = list(recorder.calls)
    assert _rounded(split_calls) == _rounded(whole)
    on = gate_recording.expected_steps(sigmas, model_sampling_of(plain), 0.75, 1.0)
    assert {round(s, 4) for s, acted in whole if acted} == {round(float(sigmas[i]), 4) for i in on}


@pytest.mark.parametrize("denoise", [0.4, 0.6])
def test_a_low_denoise_pass_is_gated_by_noise_level_like_the_full_schedule(rig, denoise):
    """KSampler at denoise d runs the tail of a longer schedule: each of its steps is adapted exactly when the
    full-noise run of that longer schedule adapts the step at the same noise level."""
    plain, conds = rig[0], rig[3]
    positive, negative = conds
    watched, recorder = _watched(rig)
    with torch.inference_mode():
        start = {"samples": torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(8))}
        _node("KSampler").sample(watched, 5, 10, 1.5, "euler", "normal", positive, negative, start, denoise)
        tail = list(recorder.calls)
        recorder.clear()
        _node("KSampler").sample(watched, 5, int(10 / denoise), 1.5, "euler", "normal", positive, negative,
                                 _latent(), 1.0)
        full = dict(_rounded(recorder.calls))
    assert len(tail) == 10 and tail[0][0] < max(full)
    assert [acted for _, acted in _rounded(tail)] == [full[s] for s, _ in _rounded(tail)]
    assert any(acted for _, acted in tail) and not all(acted for _, acted in tail)


def test_custom_sigmas_follow_the_same_rule(rig):
    plain, conds = rig[0], rig[3]
    ms = model_sampling_of(plain)
    sigmas = torch.tensor([9.0, 4.0, 2.0, float(ms.percent_to_sigma(0.75)), 0.4, 0.15, 0.0])
    expected = gate_recording.expected_steps(sigmas, ms, 0.75, 1.0)
    assert expected == [3, 4, 5]      # from the sigma at exactly 0.75 to the final step
    for run in (_sampler_custom, _sampler_custom_advanced):
        watched, recorder = _watched(rig)
        try:
            with torch.inference_mode():
                run(watched, conds, "euler", sigmas.clone(), _latent())
        except pytest.skip.Exception:
            continue
        steps = gate_recording.steps_by_noise(recorder.calls, sigmas)     # euler: one call per step
        assert sorted(step for step, (_, acted) in zip(steps, recorder.calls) if acted) == expected


def test_apply_node_takes_workflows_saved_before_end_percent(rig):
    """end_percent is an optional input: an API prompt or a saved graph without it validates and gets 1.0."""
    from comfyui_personalvideo.nodes.apply_sia import ApplySIALateSteps

    plain, reference, adapter, _ = rig
    spec = ApplySIALateSteps.INPUT_TYPES()
    assert "end_percent" not in spec["required"] and spec["optional"]["end_percent"][1]["default"] == 1.0
    (model,) = ApplySIALateSteps().apply(plain, adapter, 1.0, 0.75)       # the inputs an older workflow has
    watched, recorder = gate_recording.recording(model, reference)
    with torch.inference_mode():
        _sampler_custom(watched, rig[3], "euler", _schedule(plain, 8), _latent())
    assert [acted for _, acted in recorder.calls] == [False] * 6 + [True] * 2
