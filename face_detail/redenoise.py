"""The partial re-denoise of the face video through the host's own sampler.

All crops go through the VAE and one KSampler run together, as the frames of one video, so whatever is
attached to the MODEL takes part exactly as in generation: AnimateDiff-Evolved's motion model (and its
context windows), the late-step identity adapter, LoRAs, the noise prior.
"""
from __future__ import annotations

import torch


def redenoise(model, positive, negative, vae, crops: torch.Tensor, seed: int, steps: int, cfg: float,
              sampler_name: str, scheduler: str, denoise: float) -> torch.Tensor:
    """``crops`` (IMAGE [N, S, S, 3]) encoded, sampled with ``denoise`` of the schedule, decoded."""
    import nodes  # ComfyUI's nodes module (looked up at run time, as packs that wrap it expect)

    latent = {"samples": vae.encode(crops[..., :3])}
    (sampled,) = nodes.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                       latent, denoise=denoise)
    images = vae.decode(sampled["samples"])
    if images.ndim == 5:  # video VAEs give [B, T, H, W, C]
        images = images.reshape(-1, *images.shape[-3:])
    return images[..., :3].float().cpu().clamp(0.0, 1.0)
