"""Stage 2 in the engine: the Spatial Identity Adapter trained with the identity loss on generated videos.

Per iteration, as in the nodes (:mod:`..training.sia_trainer`): a simulated prompt
with the token; pure noise (frames x height x width); the few-step LCM schedule
(timesteps of ComfyUI's sgm_uniform: 999/749/500/250 for 4 steps) with the adapter
off and no gradient for all but the last step; the last step with the adapter on and
gradient, through the motion modules; one random frame decoded with gradient;
loss = identity loss + lambda * ||adapter - initial||^2; AdamW on the LoRA only.
Guidance ``cfg`` with the negative prompt, and the seed's independent streams for
the frame index and the noise (:mod:`..training.random_streams`), as in the node.
Frames without a face are skipped (no step) and counted; when most have none the run
stops with the nodes' message.  The same settings class (:mod:`..training.sia_settings`).  On CUDA:
gradient checkpointing of the UNet and VAE, mixed precision with fp32 LoRA weights.
"""
from __future__ import annotations

import math

import torch

from ..training import precision as amp
from ..training.random_streams import SEED_BITS, stream, stream_seed
from ..training.sia_settings import SIAHistory, SIATrainSettings, reg_term
from . import sia_peft
from .errors import EngineError


def few_step_timesteps(steps: int, train_steps: int = 1000) -> list:
    """sgm_uniform's timesteps for ``steps`` steps: evenly from the top (999) down, the last above 0."""
    top = train_steps - 1
    return [int(round(top - i * top / steps)) for i in range(steps)]


def lcm_scheduler(config: dict, steps: int):
    from diffusers import LCMScheduler

    scheduler = LCMScheduler.from_config(config)
    scheduler.set_timesteps(timesteps=few_step_timesteps(steps, int(config.get("num_train_timesteps", 1000))))
    return scheduler


def decode_frame(vae, z: torch.Tensor) -> torch.Tensor:
    """One latent frame [1, 4, h, w] -> pixels [1, 3, H, W] in 0..1, with gradient."""
    x = vae.decode((z / vae.config.scaling_factor).to(next(vae.parameters()).dtype)).sample
    return ((x.float() + 1) / 2).clamp(0, 1)


def guided_noise(models, latents, t, context, uncond, cfg: float) -> torch.Tensor:
    """The noise prediction at guidance ``cfg`` (classifier-free, ``uncond`` the negative prompt's embedding),
    as the node's training samples are made; at cfg 1 the prompt's prediction alone.  Both predictions come
    from one UNet call on a doubled batch, as ComfyUI batches cond and uncond."""
    if uncond is None or cfg == 1.0:
        return models.predict_noise(latents, t, context)
    if models.has_motion:     # [B, C, F, h, w]: one text embedding per video, repeated per frame by predict_noise
        contexts = torch.cat([context, uncond])
    else:                     # [F, C, h, w]: one text embedding per frame
        n = latents.shape[0]
        contexts = torch.cat([context.expand(n, -1, -1), uncond.expand(n, -1, -1)])
    eps, eps_uncond = models.predict_noise(torch.cat([latents, latents]), t, contexts).chunk(2)
    return eps_uncond + cfg * (eps - eps_uncond)


def run_iteration(models, scheduler_config, context, noise, frame: int, steps: int, generator, precision,
                  uncond=None, cfg: float = 1.0):
    """One generation; returns the decoded trained frame (grad to the LoRA) and the final latents."""
    unet = models.unet
    scheduler = lcm_scheduler(scheduler_config, steps)
    latents = noise.to(context.device)
    last = len(scheduler.timesteps) - 1
    for i, t in enumerate(scheduler.timesteps):
        sia_peft.set_enabled(unet, i == last)
        grad = i == last
        with torch.set_grad_enabled(grad), precision.autocast():
            eps = guided_noise(models, latents, t, context, uncond, cfg)
        out = scheduler.step(eps, t, latents, generator=generator)
        latents = out.prev_sample if not grad else out.denoised
        if not grad:
            latents = latents.detach()
    z = latents[:, :, frame] if latents.ndim == 5 else latents[frame:frame + 1]
    with precision.autocast():
        pixels = decode_frame(models.vae, z)
    return pixels, latents


def train_adapter(models, prompts, vector: torch.Tensor, identity_loss, templates, settings: SIATrainSettings,
                  progress=None, negative: str = "") -> SIAHistory:
    """Train the LoRA already attached to ``models.unet`` (see :func:`.sia_peft.attach`)."""
    settings.check()
    unet = models.unet
    params = sia_peft.parameters(unet)
    if not params:
        raise EngineError("internal: attach the SIA LoRA before training it")
    device = params[0].device
    precision = amp.resolve(settings.precision, device)
    for p in params:
        p.data = p.data.float()
    initial = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps,
                                  weight_decay=settings.weight_decay)
    checkpointing = settings.gradient_checkpointing and device.type == "cuda"
    if checkpointing:
        unet.enable_gradient_checkpointing()
        models.vae.enable_gradient_checkpointing()
    frames_rng = stream(settings.seed, "frames")
    noise_base = stream_seed(settings.seed, "noise")
    history = SIAHistory(precision=precision.name)
    h, w = settings.height // 8, settings.width // 8
    channels = int(unet.config.in_channels)
    shape = (1, channels, settings.frames, h, w) if models.has_motion else (settings.frames, channels, h, w)
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
            gen = torch.Generator().manual_seed((noise_base + it) % (2 ** SEED_BITS))
            noise = torch.randn(shape, generator=gen)
            pixels, latents = run_iteration(models, models.scheduler_config, contexts[text].to(device), noise.to(device),
                                            frame, settings.steps, gen, precision, uncond, settings.cfg)
            with precision.full():
                out = identity_loss(pixels)
                similarity = out.mean_similarity
                loss = float("nan")
                if out.has_face:
                    total = out.loss + settings.reg_lambda * reg_term(params, initial)
                    optimizer.zero_grad(set_to_none=True)
                    precision.backward_and_step(total, optimizer)
                    loss = float(total.detach())
            history.loss.append(loss)
            history.similarity.append(similarity)
            if math.isnan(loss):
                history.skipped += 1
            done = it + 1
            if done >= min(settings.no_face_check_after, settings.iterations) and \
                    history.skipped > settings.max_no_face_fraction * done:
                raise EngineError(
                    f"no face was found in the generated frame of {history.skipped} of {done} training iterations, "
                    "so the identity loss cannot train the adapter. Use an SD1.5 model that makes people, keep "
                    "'{token} {class_word}' in every prompt, and a class word such as man, woman or person.")
            if it == settings.iterations - 1:
                history.last_latent = latents.detach().cpu()
            if progress is not None:
                progress(it, loss, similarity)
    finally:
        sia_peft.set_enabled(unet, True)
        if checkpointing:
            unet.disable_gradient_checkpointing()
            models.vae.disable_gradient_checkpointing()
    return history
