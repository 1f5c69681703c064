"""Stage 2 in the engine: the Spatial Identity Adapter trained with the identity loss on generated videos.

Per iteration, as in the node (:mod:`..training.sia_trainer`), with the same streams of
the seed (:mod:`..training.identity_setup`): a simulated prompt with the token; pure
noise [frames, 4, h, w]; the few-step LCM schedule (sgm_uniform, 4 steps) computed as
ComfyUI's sampling computes it for the same model (:mod:`.noise_table`: the same noise
levels, timesteps and scaling, ``x = denoised + sigma_next * noise`` between steps, the
noise drawn frames first from the iteration's generator); the adapter off and no
gradient for all but the last step (in inference mode, as the node runs them: no version
counters or view tracking; the last step gets a normal copy of their result); the last
step with the adapter on and gradient, through the motion modules; one random frame
decoded with gradient; loss = identity loss + lambda * ||adapter - initial||^2; AdamW on
the LoRA only.  Guidance ``cfg`` with the negative prompt, combined on the denoised
predictions as ComfyUI does.  Frames without a face are skipped (no step) and counted;
when most have none the run stops with the nodes' message.  The same settings class
(:mod:`..training.sia_settings`).  On CUDA: gradient checkpointing of the UNet and VAE,
mixed precision with fp32 LoRA weights.
"""
from __future__ import annotations

import torch

from ..training.identity_setup import frame_stream, iteration_generator
from ..training.sia_settings import SIAHistory, SIATrainSettings
from . import adapter_step, sia_peft
from .noise_table import NoiseTable

NO_FACE_ADVICE = ("Use an SD1.5 model that makes people, keep "
                  "'{token} {class_word}' in every prompt, and a class word such as man, woman or person.")


def decode_frame(vae, z: torch.Tensor) -> torch.Tensor:
    """One latent frame [1, 4, h, w] -> pixels [1, 3, H, W] in 0..1, with gradient."""
    x = vae.decode((z / vae.config.scaling_factor).to(next(vae.parameters()).dtype)).sample
    return ((x.float() + 1) / 2).clamp(0, 1)


def _video(models, frames: torch.Tensor) -> torch.Tensor:
    """Frames [F, C, h, w] as the UNet takes them: one video [1, C, F, h, w] with motion modules, else as they are."""
    return frames.permute(1, 0, 2, 3)[None] if models.has_motion else frames


def _frames(models, video: torch.Tensor) -> torch.Tensor:
    return video[0].permute(1, 0, 2, 3) if models.has_motion else video


def guided_noise(models, latents, t, context, uncond, cfg: float) -> torch.Tensor:
    """The noise predictions (cond, uncond) for ``latents`` in the UNet's layout, from one UNet call on a doubled
    batch as ComfyUI batches cond and uncond; uncond is None at cfg 1 (the prompt's prediction alone)."""
    if uncond is None or cfg == 1.0:
        return models.predict_noise(latents, t, context), None
    if models.has_motion:     # [B, C, F, h, w]: one text embedding per video, repeated per frame by predict_noise
        contexts = torch.cat([context, uncond])
    else:                     # [F, C, h, w]: one text embedding per frame
        n = latents.shape[0]
        contexts = torch.cat([context.expand(n, -1, -1), uncond.expand(n, -1, -1)])
    eps, eps_uncond = models.predict_noise(torch.cat([latents, latents]), t, contexts).chunk(2)
    return eps, eps_uncond


def guided_denoised(models, table: NoiseTable, x, sigma, context, uncond, cfg: float) -> torch.Tensor:
    """The denoised frames [F, C, h, w] for the noisy frames ``x`` at ``sigma`` (a CPU scalar), guided at ``cfg``:
    uncond + cfg * (cond - uncond) of the two denoised predictions (classifier-free guidance)."""
    t = table.timestep(sigma).float().to(x.device)
    eps, eps_uncond = guided_noise(models, _video(models, table.model_input(x, sigma)), t, context, uncond, cfg)
    cond = table.denoised(x, sigma, _frames(models, eps))
    if eps_uncond is None:
        return cond
    plain = table.denoised(x, sigma, _frames(models, eps_uncond))
    return plain + (cond - plain) * cfg


def run_iteration(models, table: NoiseTable, context, noise, frame: int, steps: int, generator, precision,
                  uncond=None, cfg: float = 1.0):
    """One training sample from ``noise`` [F, C, h, w]; returns the decoded trained frame (grad to the LoRA) and
    the final denoised frames [F, C, h, w]."""
    unet = models.unet
    sigmas = table.sgm_uniform(steps)
    x = noise.to(context.device) * torch.sqrt(1.0 + sigmas[0] ** 2.0)   # from pure noise at the top of the table
    last = steps - 1
    for i in range(steps):
        sia_peft.set_enabled(unet, i == last)
        if i < last:   # adapter off, nothing to train: inference mode, as the node samples these steps
            with torch.inference_mode():
                with precision.autocast():
                    denoised = guided_denoised(models, table, x, sigmas[i], context, uncond, cfg)
                step_noise = torch.randn(denoised.shape, generator=generator, dtype=torch.float32)
                x = denoised + sigmas[i + 1] * step_noise.to(denoised.device, denoised.dtype)
            continue
        with torch.enable_grad(), precision.autocast():
            denoised = guided_denoised(models, table, x.clone(), sigmas[i], context, uncond, cfg)
    with precision.autocast():
        pixels = decode_frame(models.vae, denoised[frame:frame + 1])
    return pixels, denoised


def train_adapter(models, prompts, vector: torch.Tensor, identity_loss, templates, settings: SIATrainSettings,
                  progress=None, negative: str = "") -> SIAHistory:
    """Train the LoRA already attached to ``models.unet`` (see :func:`.sia_peft.attach`)."""
    settings.check()
    unet = models.unet
    run = adapter_step.start(unet, settings, NO_FACE_ADVICE)
    device, precision, checkpointing = run.device, run.precision, run.checkpointing
    if checkpointing:
        models.vae.enable_gradient_checkpointing()
    frames_rng = frame_stream(settings.seed)
    table = NoiseTable(models.scheduler_config)
    shape = (settings.frames, int(unet.config.in_channels), settings.height // 8, settings.width // 8)
    contexts = {}
    uncond = None
    if settings.cfg != 1.0:
        with torch.no_grad():
            uncond = prompts.encode(negative, vector).detach().to(device)
    try:
        for it in range(settings.iterations):
            text = templates.draw()
            if text not in contexts:
                with torch.no_grad():
                    contexts[text] = prompts.encode(text, vector).detach()
            frame = frames_rng.randrange(settings.frames)
            gen = iteration_generator(settings.seed, it)
            noise = torch.randn(shape, generator=gen)
            pixels, latents = run_iteration(models, table, contexts[text].to(device), noise.to(device), frame,
                                            settings.steps, gen, precision, uncond, settings.cfg)
            run.update(it, identity_loss, pixels, latents, progress)
    finally:
        run.finish()
        if checkpointing:
            models.vae.disable_gradient_checkpointing()
    return run.history
