"""The gate under AnimateDiff-Evolved: two-pass and low-denoise runs through the real sampler nodes.

SD1.5-size random weights and a random AnimateLCM-layout motion model (the fixture of
tests/test_sia_animatediff.py); runs only where AnimateDiff-Evolved is installed.
Every UNet call is recorded with its timestep and the gate's decision for it.
"""
import pytest
import torch

import nodes
from comfyui_personalvideo.sia import apply_sia

import full_models

pytestmark = [pytest.mark.slow, pytest.mark.animatediff]

if not full_models.has_animatediff_evolved():
    pytest.skip("AnimateDiff-Evolved is not installed in this ComfyUI host", allow_module_level=True)

from test_sia_animatediff import animated  # noqa: E402,F401  (the module's models, built once)


def _recorded(model, adapter):
    patched, _, state = apply_sia(model, adapter, 1.0, 0.75)
    decisions = []

    def hook(module, args, kwargs, output):
        timesteps = args[1] if len(args) > 1 else kwargs["timesteps"]
        decisions.append((round(float(timesteps.reshape(-1)[0]), 2), state.active))

    handle = patched.model.diffusion_model.register_forward_hook(hook, with_kwargs=True)
    return patched, decisions, handle


def _latent():
    return {"samples": torch.zeros(8, 4, 8, 8)}


def _advanced(model, pos, neg, start, end, add_noise, leftover, latent):
    return nodes.NODE_CLASS_MAPPINGS["KSamplerAdvanced"]().sample(
        model, "enable" if add_noise else "disable", 4, 4, 1.0, "lcm", "sgm_uniform", pos, neg, latent, start, end,
        "enable" if leftover else "disable")[0]


def test_two_passes_and_a_low_denoise_pass_under_animatediff_evolved(animated):
    plain, ad_model, pos, neg, adapter = animated[:5]
    patched, decisions, handle = _recorded(ad_model, adapter)
    try:
        with torch.inference_mode():
            whole = _advanced(patched, pos, neg, 0, 10000, True, False, _latent())
            unsplit = list(decisions)
            decisions.clear()
            first = _advanced(patched, pos, neg, 0, 2, True, True, _latent())
            _advanced(patched, pos, neg, 2, 10000, False, False, first)
            split = list(decisions)
            decisions.clear()
            nodes.NODE_CLASS_MAPPINGS["KSampler"]().sample(patched, 4, 2, 1.0, "lcm", "sgm_uniform", pos, neg,
                                                           whole, 0.5)
            low = list(decisions)
            plain_whole = _advanced(ad_model, pos, neg, 0, 10000, True, False, _latent())
    finally:
        handle.remove()
    steps = sorted({t for t, _ in unsplit}, reverse=True)
    assert len(steps) == 4
    on = {t: active for t, active in unsplit}
    assert [on[t] for t in steps] == [False, False, False, True]      # the final step of 4, as in training
    assert all(on[t] == active for t, active in unsplit)                # context windows included: one decision
    assert split == unsplit
    assert [active for _, active in low] == [on[t] for t, _ in low] and low[-1][1] and not low[0][1]
    assert not torch.equal(whole["samples"], plain_whole["samples"])    # the adapter did act
