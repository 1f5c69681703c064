"""Generation: text to video (motion modules in) or to frames, with the adapter on the late steps only.

The loop is diffusers' usual one (scheduler ``step`` after each UNet call,
classifier-free guidance on a doubled batch), with the peft adapter switched on
for exactly the calls :func:`.late_gate.adapted_steps` names.  Any diffusers
scheduler works: a short name of :data:`SCHEDULERS` or a class name such as
``DPMSolverMultistepScheduler``, built from SD1.5's noise schedule (shipped).

The seed fixes the video: the starting noise and the noise stochastic schedulers
add at each step (LCM, Euler ancestral, DDPM ...) come from one generator seeded
with it, and whatever a scheduler draws from torch's global generator instead is
drawn, within the run, from that generator seeded with the seed (the caller's global
random state is left as it was).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch

from . import late_gate, sia_peft
from .errors import EngineError

SCHEDULERS = {"ddim": "DDIMScheduler", "lcm": "LCMScheduler", "euler": "EulerDiscreteScheduler",
              "euler_a": "EulerAncestralDiscreteScheduler", "dpmpp_2m": "DPMSolverMultistepScheduler",
              "unipc": "UniPCMultistepScheduler", "pndm": "PNDMScheduler", "heun": "HeunDiscreteScheduler",
              "ddpm": "DDPMScheduler"}
VIDEO_FORMATS = (".mp4", ".webp", ".gif")


@dataclass
class GenerateSettings:
    prompt: str
    negative: str = ""
    frames: int = 16
    width: int = 512
    height: int = 512
    steps: int = 25
    cfg: float = 7.5
    seed: int = 0
    scheduler: str = "ddim"
    strength: float = 1.0
    start_percent: float = 0.75
    end_percent: float = 1.0

    def check(self) -> None:
        if self.frames < 1 or self.steps < 1:
            raise EngineError(f"frames and steps must be at least 1 (got {self.frames}, {self.steps}).")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 64 or value % 8:
                raise EngineError(f"{name} must be a multiple of 8 and at least 64 (got {value}).")
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise EngineError(f"start/end percent must satisfy 0 <= start <= end <= 1 (got {self.start_percent}, "
                              f"{self.end_percent}); 0.75 and 1.0 adapt the last quarter of the steps.")


def make_scheduler(name: str, config: dict):
    import diffusers

    class_name = SCHEDULERS.get(name.lower(), name)
    cls = getattr(diffusers, class_name, None)
    if cls is None or not class_name.endswith("Scheduler"):
        raise EngineError(f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)} or a diffusers scheduler "
                          "class name (e.g. DPMSolverMultistepScheduler).")
    return cls.from_config(config)


def initial_latents(unet, settings: GenerateSettings, generator: torch.Generator, motion: bool) -> torch.Tensor:
    channels = int(unet.config.in_channels)
    h, w = settings.height // 8, settings.width // 8
    shape = (1, channels, settings.frames, h, w) if motion else (settings.frames, channels, h, w)
    return torch.randn(shape, generator=generator)


def step(scheduler, eps, t, latents, generator: torch.Generator):
    """The scheduler's step, its noise (if it adds any) from ``generator`` where it takes one."""
    extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    return scheduler.step(eps, t, latents, **extra).prev_sample


def denoise(models, scheduler, latents, context, uncond, settings: GenerateSettings, adapted: set,
            progress=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The sampling loop; ``adapted`` the call indices with the adapter on; ``generator`` the step noise's."""
    device = next(models.unet.parameters()).device
    has_lora = bool(sia_peft.lora_layers(models.unet))
    guided = settings.cfg != 1.0
    batch = latents.shape[0]
    text = torch.cat([uncond.expand(batch, -1, -1), context.expand(batch, -1, -1)]) if guided \
        else context.expand(batch, -1, -1)
    latents = latents.to(device) * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        if has_lora:
            sia_peft.set_enabled(models.unet, i in adapted)
        x = torch.cat([latents, latents]) if guided else latents
        x = scheduler.scale_model_input(x, t)
        with torch.no_grad():
            eps = models.predict_noise(x, t, text)
        if guided:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + settings.cfg * (eps_c - eps_u)
        latents = step(scheduler, eps, t, latents, generator)
        if progress is not None:
            progress(i, len(scheduler.timesteps), i in adapted)
    if has_lora:
        sia_peft.set_enabled(models.unet, True)
    return latents


def decode(vae, latents: torch.Tensor, motion: bool) -> torch.Tensor:
    """Latents -> frames [F, 3, H, W] in 0..1."""
    if motion:
        latents = latents[0].permute(1, 0, 2, 3)
    dtype = next(vae.parameters()).dtype
    frames = []
    with torch.no_grad():
        for z in latents.split(4):
            x = vae.decode((z / vae.config.scaling_factor).to(dtype)).sample.float()
            frames.append(((x + 1) / 2).clamp(0, 1).cpu())
    return torch.cat(frames)


def generate(models, settings: GenerateSettings, adapter=None, progress=None) -> dict:
    """Frames [F, 3, H, W] in 0..1 and which steps were adapted.  ``adapter``: an :class:`..sia.SIAAdapter`
    (attached to the UNet for this call and removed afterwards) whose embedding names the identity."""
    from .identity_token import TokenPrompts

    settings.check()
    scheduler = make_scheduler(settings.scheduler, models.scheduler_config)
    scheduler.set_timesteps(settings.steps)
    adapted = set(late_gate.adapted_steps(scheduler, settings.start_percent, settings.end_percent))
    name = adapter.info.name if adapter is not None else ""
    class_word = (adapter.info.training.get("class_word") if adapter is not None else None) or "person"
    prompts = TokenPrompts(models.text_encoder, models.tokenizer, class_word, name)
    vector = None if adapter is None or adapter.embedding is None else adapter.embedding.reshape(-1).float()
    if vector is None and ("{token}" in settings.prompt or (name and f"embedding:{name}" in settings.prompt)):
        raise EngineError(f"the prompt names the identity but the adapter {adapter.source if adapter else ''} holds "
                          "no token; train it with the engine or the Train node (they save the token with it).")
    with torch.no_grad():
        context = prompts.encode(settings.prompt, vector)
        uncond = prompts.encode(settings.negative, None)
    generator = torch.Generator().manual_seed(settings.seed)
    latents = initial_latents(models.unet, settings, generator, models.has_motion)
    attached = adapter is not None and settings.strength != 0
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(settings.seed)      # for what peft or a scheduler draws without the generator
        if attached:
            sia_peft.attach(models.unet, adapter.rank, adapter.alpha, models.res_blocks, adapter=adapter)
            sia_peft.set_strength(models.unet, settings.strength * adapter.alpha / adapter.rank)
        try:
            latents = denoise(models, scheduler, latents, context, uncond, settings, adapted if attached else set(),
                              progress, generator)
        finally:
            if attached:
                sia_peft.detach(models.unet)
    return {"frames": decode(models.vae, latents, models.has_motion), "adapted_steps": sorted(adapted),
            "steps": len(scheduler.timesteps)}


def write_video(frames: torch.Tensor, path: str, fps: int = 8) -> str:
    """Frames [F, 3, H, W] 0..1 to .mp4 (PyAV), .webp or .gif (Pillow), whole or not at all."""
    import numpy as np

    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_FORMATS:
        raise EngineError(f"the output must end in {', '.join(VIDEO_FORMATS)} (got {path!r}).")
    rgb = (frames.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp{ext}")
    try:
        if ext == ".mp4":
            import av

            with av.open(tmp, mode="w") as container:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = rgb.shape[2] // 2 * 2, rgb.shape[1] // 2 * 2
                stream.pix_fmt = "yuv420p"
                for image in rgb:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:stream.height, :stream.width]),
                                                       format="rgb24")
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
        else:
            from PIL import Image

            images = [Image.fromarray(image) for image in rgb]
            extra = {"lossless": True} if ext == ".webp" else {}
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0,
                           **extra)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
