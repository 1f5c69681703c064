"""Every model call of a real run is gated as the step it belongs to, for every sampler and scheduler of the host.

For each sampler in the host's SAMPLER_NAMES (KSAMPLER_NAMES plus ddim, uni_pc,
uni_pc_bh2) and each scheduler in SCHEDULER_NAMES, a tiny SD1.5-layout model
samples a few steps with the adapter gated to the last quarter; every call is
recorded with its sigma and whether the adapter acted (its output compared
with a separate plain model's on the same input).  Each step must be all-on or
all-off, and the on-steps must be exactly the rule's.

``PV_GATE_MATRIX=diagonal`` (both dependency lanes in .ci/run) runs every sampler and every scheduler
at least once, paired along the diagonal, instead of every pair: the full matrix runs with `scripts/test`
by hand (and on the modern host before a release).
"""
import os

import pytest
import torch

import comfy.samplers
from comfyui_personalvideo.sia import apply_sia

import gate_recording
import random_adapters
from gate_recording import model_sampling_of
import sampling
import tiny_models

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why

STEPS = 6


@pytest.fixture(scope="session")
def models():
    plain = tiny_models.tiny_sd15_model(seed=0)
    reference = tiny_models.tiny_sd15_model(seed=0)     # same weights, never patched
    return plain, reference


@pytest.fixture(scope="session")
def adapter(models):
    return random_adapters.random_adapter(models[0])


def run_recorded(plain, reference, adapter, sampler, schedule, start=0.75, end=1.0, seed=3):
    import comfy.sample

    patched = apply_sia(plain, adapter, 1.0, start, end)[0]
    watched, recorder = gate_recording.recording(patched, reference)
    latent = torch.zeros(1, 4, 4, 4)
    noise = comfy.sample.prepare_noise(latent, seed)
    positive, negative = tiny_models.random_cond(plain, 1), tiny_models.random_cond(plain, 2)
    comfy.sample.sample_custom(watched, noise, 1.5, sampler, schedule.clone(), positive, negative, latent,
                               callback=recorder.callback, disable_pbar=True, seed=seed)
    return recorder


def sampler_scheduler_pairs():
    samplers, schedulers = list(comfy.samplers.SAMPLER_NAMES), list(comfy.samplers.SCHEDULER_NAMES)
    if os.environ.get("PV_GATE_MATRIX") == "diagonal":
        n = max(len(samplers), len(schedulers))
        return [(samplers[i % len(samplers)], schedulers[i % len(schedulers)]) for i in range(n)]
    return [(a, b) for a in samplers for b in schedulers]


@pytest.mark.parametrize("sampler_name,scheduler", sampler_scheduler_pairs())
def test_every_call_is_gated_as_its_step(models, adapter, sampler_name, scheduler):
    plain, reference = models
    schedule = sampling.schedule(plain, scheduler, STEPS)
    expected = gate_recording.expected_steps(schedule, model_sampling_of(plain), 0.75, 1.0)
    assert expected and expected[0] > 0       # a switch from off to on inside the run
    recorder = run_recorded(plain, reference, adapter, comfy.samplers.sampler_object(sampler_name), schedule)
    on = gate_recording.check_run(recorder, schedule, sampler_name, expected)
    if sampler_name not in ("dpm_fast", "dpm_adaptive"):   # these two sample on a grid of their own
        assert on == expected


@pytest.mark.parametrize("sampler_name", ["euler", "heun", "dpm_2", "heunpp2"])
def test_churned_steps_stay_in_their_step(models, adapter, sampler_name):
    """s_churn > 0 evaluates the model above the step's sigma, beyond the previous schedule point."""
    plain, reference = models
    schedule = sampling.schedule(plain, "karras", 8)
    sampler = comfy.samplers.ksampler(sampler_name, {"s_churn": 8.0})
    recorder = run_recorded(plain, reference, adapter, sampler, schedule, start=0.5)
    first_call, top = recorder.calls[0][0], float(schedule[0])
    assert first_call > top * 1.05                    # churn really lifted the sigma
    gate_recording.check_run(recorder, schedule, sampler_name,
              gate_recording.expected_steps(schedule, model_sampling_of(plain), 0.5, 1.0))


@pytest.mark.parametrize("sampler_name", ["euler", "heun", "dpmpp_2s_ancestral", "dpm_2_ancestral", "dpmpp_sde",
                                          "uni_pc"])
def test_end_percent_switches_the_adapter_off_again(models, adapter, sampler_name):
    plain, reference = models
    schedule = sampling.schedule(plain, "normal", 10)
    expected = gate_recording.expected_steps(schedule, model_sampling_of(plain), 0.3, 0.7)
    assert expected == [3, 4, 5, 6]                     # positions i/9: 0.33 .. 0.67
    recorder = run_recorded(plain, reference, adapter, comfy.samplers.sampler_object(sampler_name), schedule,
                            start=0.3, end=0.7)
    assert gate_recording.check_run(recorder, schedule, sampler_name, expected) == expected
