"""Generation on Wan in the engine: diffusers' Wan transformer and VAE, the adapter as peft's LoRA, gated late.

The run is core's ``euler`` sampler on core's ``simple`` schedule at the models' shift (:mod:`.flow_schedule`):
noise from ``torch.manual_seed(seed)`` in the latent's shape (core's ``prepare_noise``), scaled by the first
noise level, then Euler steps on the denoised predictions, guided at ``cfg`` with the negative prompt as core
combines them.  The adapter (any Wan adapter file: ours, musubi-tuner's, diffusers') is on for the steps whose
noise level lies in [start_percent, end_percent] of the schedule, the nodes' rule, and off for the others.
So with the same weights, prompt embeddings and seed, a run here and a run of core's KSampler (euler, simple)
with Apply SIA at Late Steps walk the same latents (tests/test_engine_wan.py compares them).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sia.families import WAN
from ..training.sia_settings import check_wan_video
from . import flow_schedule, sia_peft, wan_peft
from .errors import EngineError
from .generate import GenerateSettings
from .wan_models import split_at_token


@dataclass
class WanGenerateSettings(GenerateSettings):
    """The command's settings with Wan's defaults (``scheduler`` unused: always core's euler on ``simple``)."""

    frames: int = 17
    width: int = 448
    height: int = 448
    steps: int = 30
    cfg: float = 5.0

    def check(self) -> None:
        super().check()
        check_wan_video(self.frames, self.width, self.height)


def sample(models, context, uncond, noise, settings: WanGenerateSettings, adapted: set, progress=None):
    """The final denoised latents (Wan's normalised space) from ``noise``; ``adapted``: the step indices the LoRA
    (when attached) is on for."""
    from .wan_train import guided_denoised

    sigmas = flow_schedule.simple_sigmas(settings.steps, models.shift)
    x = noise * float(sigmas[0])
    lora = bool(sia_peft.lora_layers(models.transformer))
    with torch.no_grad():
        for i in range(settings.steps):
            if lora:
                sia_peft.set_enabled(models.transformer, i in adapted)
            denoised = guided_denoised(models, x, float(sigmas[i]), context, uncond, settings.cfg)
            x = flow_schedule.euler_step(x, denoised, float(sigmas[i]), float(sigmas[i + 1]))
            if progress is not None:
                progress(i, settings.steps, i in adapted)
    if lora:
        sia_peft.set_enabled(models.transformer, True)
    return x


def generate_wan(models, settings: WanGenerateSettings, adapter=None, progress=None, context=None,
                 uncond=None) -> dict:
    """A video on Wan: ``frames`` [F, 3, H, W] in 0..1, the final ``latents`` and the ``adapted_steps``.
    ``adapter``: a Wan :class:`..sia.SIAAdapter` (attached for this call, taken off afterwards).  ``context`` /
    ``uncond``: prompt embeddings given directly (else the models' umT5 encodes the prompts)."""
    settings.check()
    if adapter is not None and adapter.info.base != WAN:
        raise EngineError(f"the adapter {adapter.source} is for {adapter.info.base or 'SD1.5'}, not Wan: use "
                          "--backbone sd15, or an adapter trained on Wan.")
    device = next(models.transformer.parameters()).device
    token = None if adapter is None or adapter.embedding is None else adapter.embedding.reshape(-1).float()
    name = adapter.info.name if adapter is not None else ""
    if context is None and token is None and len(split_at_token(settings.prompt, name)) > 1:
        raise EngineError(f"the prompt names the identity token ({'{token}'} or embedding:{name}) but "
                          f"{adapter.source if adapter is not None else 'no adapter is given and nothing'} holds no "
                          "token: train the identity with the Wan Train node's token stage (ti_steps > 0), or "
                          "write the class word instead.")
    context = models.encode(settings.prompt, token, name) if context is None else context
    if settings.cfg != 1.0 and uncond is None:
        uncond = models.encode(settings.negative)
    sigmas = flow_schedule.simple_sigmas(settings.steps, models.shift)
    adapted = set(flow_schedule.adapted_steps(sigmas, models.shift, settings.start_percent, settings.end_percent))
    shape = models.latent_shape(settings.frames, settings.height, settings.width)
    noise = torch.randn(shape, generator=torch.manual_seed(settings.seed))
    on = adapter is not None and settings.strength != 0.0
    if on:
        with torch.random.fork_rng():
            wan_peft.attach(models.transformer, adapter.rank, adapter.alpha, adapter=adapter)
        sia_peft.set_strength(models.transformer, adapter.scale(settings.strength))
    try:
        latents = sample(models, context.to(device), None if uncond is None else uncond.to(device),
                         noise.to(device), settings, adapted if on else set(), progress)
    finally:
        if on:
            sia_peft.detach(models.transformer)
    with torch.no_grad():
        video = models.decode(latents)
    return {"frames": video[0].permute(1, 0, 2, 3).cpu(), "latents": latents.cpu(),
            "adapted_steps": sorted(adapted) if on else [], "steps": settings.steps}
