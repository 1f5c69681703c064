"""Running ComfyUI's own sampler machinery in tests and recording each step."""
from __future__ import annotations

import torch


def schedule(model, scheduler: str, steps: int) -> torch.Tensor:
    """The run's sigmas, computed the way the trainer does (model sampling patches included)."""
    from comfyui_personalvideo.training.few_step_sampler import lcm_schedule

    return lcm_schedule(model, steps, scheduler)


def sample(model, positive, negative, steps=4, sampler_name="lcm", scheduler="sgm_uniform", cfg=1.0,
           seed=0, frames=1, size=32, latent=None):
    """Sample through comfy.sample.sample_custom; returns (final latent, [denoised per step])."""
    import comfy.sample
    import comfy.samplers

    if latent is None:
        latent = torch.zeros(frames, 4, size // 8, size // 8)
    noise = comfy.sample.prepare_noise(latent, seed)
    denoised = []

    def callback(step, x0, x, total):
        denoised.append(x0.detach().clone())

    sampler = comfy.samplers.sampler_object(sampler_name)
    out = comfy.sample.sample_custom(model, noise, cfg, sampler, schedule(model, scheduler, steps), positive, negative,
                                     latent, callback=callback, disable_pbar=True, seed=seed)
    return out, denoised
