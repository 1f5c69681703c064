"""The noise prior for the host's ordinary samplers (KSampler, KSamplerAdvanced, SamplerCustom): a copy of
the MODEL whose sampling turns the noise the sampler made for its seed into the prior's noise.

- Hosts with model wrappers (ComfyUI since late 2024): an ``outer_sample`` wrapper on the copy, which every
  sampler of those hosts runs through (SamplerCustomAdvanced included), before AnimateDiff-Evolved splits
  the video into context windows: the correlation spans the whole video.
- Older hosts (e.g. the March 2024 tree): the copy carries gamma in its model options, and
  ``comfy.samplers.sample`` (through which every sampler of those hosts runs) is wrapped once to read it.

Zero noise (KSamplerAdvanced with add_noise off) stays zero; gamma = 0 leaves the sampler's noise untouched.
"""
from __future__ import annotations

import logging

from .correlation import check_gamma, correlate_frames

log = logging.getLogger("PersonalVideo")
OPTION_KEY = "personalvideo_noise_prior"  # model_options entry: gamma (older hosts)
WRAPPER_KEY = "personalvideo_noise_prior"


def _wrapper_types():
    try:
        import comfy.patcher_extension as ext
    except ImportError:
        return None
    return getattr(getattr(ext, "WrappersMP", None), "OUTER_SAMPLE", None)


def with_noise_prior(model, gamma: float):
    """A copy of the MODEL ``model`` whose sampling uses the 3D Gaussian noise prior with ``gamma``."""
    gamma = check_gamma(gamma)
    patched = model.clone()
    outer_sample = _wrapper_types()
    if outer_sample is not None and hasattr(patched, "add_wrapper_with_key"):
        patched.remove_wrappers_with_key(outer_sample, WRAPPER_KEY)
        if gamma > 0:
            patched.add_wrapper_with_key(outer_sample, WRAPPER_KEY, _outer_sample_wrapper(gamma))
        return patched
    patched.model_options = dict(patched.model_options)
    patched.model_options[OPTION_KEY] = gamma
    install_sample_fallback()
    return patched


def _outer_sample_wrapper(gamma: float):
    def outer_sample(executor, noise, *args, **kwargs):
        return executor(correlate_frames(noise, gamma), *args, **kwargs)

    return outer_sample


def install_sample_fallback() -> bool:
    """On hosts without model wrappers, wrap ``comfy.samplers.sample`` to apply the prior of the model
    options it is given. Idempotent."""
    import comfy.samplers

    current = comfy.samplers.sample
    if getattr(current, "_personalvideo_noise_prior", False):
        return False

    def sample(model, noise, positive, negative, cfg, device, sampler, sigmas, model_options={}, *args, **kwargs):
        gamma = model_options.get(OPTION_KEY, 0.0) if isinstance(model_options, dict) else 0.0
        if gamma:
            noise = correlate_frames(noise, gamma)
        return current(model, noise, positive, negative, cfg, device, sampler, sigmas, model_options, *args, **kwargs)

    sample._personalvideo_noise_prior = True
    sample.__wrapped__ = current
    comfy.samplers.sample = sample
    log.info("[PersonalVideo] host has no model wrappers; the noise prior wraps comfy.samplers.sample")
    return True
