"""Stage 1 in the engine: textual inversion of the identity token on the reference photos.

As in the nodes: the vector starts from the class word's embedding; the ordinary
noise-prediction loss on the photos (the means of the VAE's posterior, random horizontal
flips, the nodes' prompt templates), AdamW at lr 1e-3, batch 4, 400 steps; only the
vector trains.  The draws come from the token stage's streams of the seed
(:func:`..training.identity_setup.token_streams`), so the node and the engine draw the
same photos, flips, templates, timesteps and noise.  The photos are single images: the
image UNet, never the motion modules.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..training import precision as amp
from ..training.checkpoint_choice import engine_checkpointing
from ..training.identity_setup import token_streams
from ..training.textual_inversion import TISettings, draw_batch
from . import training_dtypes
from .errors import EngineError
from .noise_table import NoiseTable


def encode_photos(vae, crops: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Photos [N, H, W, 3] (or [N, 3, H, W]) in 0..1 -> UNet-space latents [N, 4, h, w] (posterior means)."""
    if crops.ndim != 4:
        raise EngineError("internal: the reference photos must be a batch of RGB images")
    x = crops.permute(0, 3, 1, 2) if crops.shape[-1] == 3 else crops
    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    with torch.no_grad():
        latents = [vae.encode((chunk * 2 - 1).to(device, dtype)).latent_dist.mean for chunk in x.split(4)]
    return torch.cat(latents).float() * vae.config.scaling_factor


def noise_loss(unet, prompts, latents, vector, draw, table: NoiseTable, precision) -> torch.Tensor:
    """The noise-prediction loss of ``vector`` on one draw, the photos noised as the node noises them
    (``x0 + sigma_t * noise``, scaled to the UNet's input, :mod:`.noise_table`)."""
    x0 = latents[draw.index].clone()
    for b, flip in enumerate(draw.flip):
        if flip:
            x0[b] = x0[b].flip(-1)
    sigma = table.sigma(draw.t.float()).view(-1, 1, 1, 1).to(x0)
    x_t = table.model_input(x0 + draw.noise.to(x0) * sigma, sigma)
    context = prompts.encode(draw.template, vector).expand(len(draw.index), -1, -1)
    dtype = next(unet.parameters()).dtype
    with precision.autocast():
        eps = unet(x_t.to(dtype), draw.t.float().to(x0.device), encoder_hidden_states=context.to(dtype)).sample
    return F.mse_loss(eps.float(), draw.noise.to(x0))


def train_token(unet, vae, prompts, crops: torch.Tensor, table: NoiseTable, settings: TISettings,
                progress=None) -> tuple:
    """The identity vector [D] (fp32) and the losses; ``unet`` the image UNet (frozen)."""
    settings.check()
    device = next(unet.parameters()).device
    precision = amp.resolve(settings.precision, device, training_dtypes.compute_dtype(unet))
    vector = torch.nn.Parameter(prompts.class_word_vector().to(device))
    losses = []
    if settings.steps == 0:
        return vector.detach().clone(), losses
    latents = encode_photos(vae, crops, settings.seed).to(device)
    optimizer = torch.optim.AdamW([vector], lr=settings.lr, weight_decay=0.0)
    rng, gen = token_streams(settings.seed)
    checkpointing = engine_checkpointing(settings.gradient_checkpointing, device)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    try:
        for step in range(settings.steps):
            draw = draw_batch(rng, gen, latents.cpu(), settings.batch_size)
            loss = noise_loss(unet, prompts, latents, vector, draw, table, precision)
            optimizer.zero_grad(set_to_none=True)
            precision.backward_and_step(loss, optimizer)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, losses[-1])
    finally:
        if checkpointing:
            unet.disable_gradient_checkpointing()
    return vector.detach().clone(), losses
