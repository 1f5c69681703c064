"""Stage 1: textual inversion of the identity token (one new token vector).

The vector starts from the class word's token embedding and is trained with the
ordinary noise-prediction loss on the reference photos encoded by the VAE
(random horizontal flips as augmentation), lr 1e-3, batch 4, 400 steps by
default.  Only the vector trains; CLIP, UNet and VAE stay frozen.  The photos
are single images: the UNet is called directly (``apply_model``), never through
a motion model (an AnimateDiff-Evolved motion model attached to the MODEL is
left out of this stage), with the optional plain image MODEL when given.
The UNet call runs with its layers checkpointed and, on CUDA, under mixed
precision (the vector stays fp32), like the adapter stage's gradient step.

:func:`evaluation_loss` is the same noise-prediction loss on a fixed set of
(photo, timestep, noise, template) draws: the first draws training makes for a
seed (the token stage's streams of :mod:`.identity_setup`), so a deterministic
measure of how well a vector fits what training saw.

The photos' latents are the means of the VAE's posterior on every host (the
March 2024 host's ``VAE.encode`` samples it instead; later ones take the mean),
as the engine encodes them.

How the vector enters CLIP: prompts are written with a one-token marker word
in place of ``{token}``; a forward hook on CLIP's token-embedding table swaps
the marker's rows for the vector (differentiable, same on both hosts).  The
result is saved as a ComfyUI embedding (``emb_params``) so ``embedding:<name>``
gives the same vector in any prompt.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from . import precision as amp
from .checkpointing import unet_regions
from .devices import compute_dtype_of, device_of
from .errors import TrainingError
from .checkpoint_choice import CheckpointChoice
from .inference_tensors import gradient_window, normal_copy, normal_tensors, with_fallback
from .interruption import checked_in_layers

MARKERS = ("sks", "zwx", "ohwx")
TI_TEMPLATES = ("a photo of {token} {class_word}", "a close-up photo of {token} {class_word}",
                "a portrait of {token} {class_word}", "a good photo of {token} {class_word}",
                "a cropped photo of {token} {class_word}", "a bright photo of {token} {class_word}")


@dataclass
class TISettings:
    steps: int = 400
    lr: float = 1e-3
    batch_size: int = 4
    seed: int = 0
    gradient_checkpointing: str = "auto"   # see training.checkpoint_choice
    precision: str = "auto"

    def check(self):
        from .checkpoint_choice import normalise

        self.gradient_checkpointing = normalise(self.gradient_checkpointing)
        if self.steps < 0:
            raise TrainingError(f"ti_steps must be 0 or more (got {self.steps}).")
        if self.batch_size < 1:
            raise TrainingError(f"ti_batch_size must be at least 1 (got {self.batch_size}).")
        amp.check_choice(self.precision)

    def to_json(self):
        return asdict(self)


def text_model(clip):
    """The SD1.5 CLIP-L text model of a CLIP, or a clear error for other text encoders."""
    cond = getattr(clip, "cond_stage_model", None)
    names = [n for n in ("clip_l", "clip_g", "clip_h", "t5xxl") if hasattr(cond, n)]
    if names != ["clip_l"]:
        raise TrainingError(
            f"the CLIP input is not an SD1.5 text encoder (it has {names or type(cond).__name__}). "
            "Connect the CLIP of the same SD1.5 checkpoint as the MODEL.")
    return cond.clip_l


def token_embedding(clip) -> torch.nn.Module:
    return text_model(clip).transformer.get_input_embeddings()


def single_token_id(clip, word: str):
    ids = [t[0] if isinstance(t, tuple) else t for t in clip.tokenize(word)["l"][0]]
    inner = [i for i in ids[1:] if isinstance(i, int) and i not in (ids[0], ids[-1])]
    return inner


def pick_marker(clip) -> tuple:
    for word in MARKERS:
        ids = single_token_id(clip, word)
        if len(ids) == 1:
            return word, ids[0]
    raise TrainingError("internal: no one-token marker word in this CLIP's vocabulary")


def class_word_vector(clip, class_word: str) -> torch.Tensor:
    ids = single_token_id(clip, class_word)
    if not ids:
        raise TrainingError(f"class_word {class_word!r} gives no tokens; use a plain word such as man, woman or person.")
    table = token_embedding(clip).weight
    with normal_tensors():
        return table[ids].detach().float().mean(0).clone()


@contextlib.contextmanager
def inject_vector(clip, marker_id: int, vector: torch.Tensor):
    """Within the block, CLIP sees ``vector`` wherever the marker token is."""
    emb = token_embedding(clip)

    def hook(module, args, output):
        ids = args[0]
        if not torch.is_tensor(ids) or ids.dtype not in (torch.int64, torch.int32):
            return None
        mask = (ids == marker_id).unsqueeze(-1)
        if not bool(mask.any()):
            return None
        return torch.where(mask, vector.to(output.device, output.dtype), output)

    handle = emb.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class TokenPrompts:
    """Encodes prompt templates with the identity vector in place of ``{token}``."""

    def __init__(self, clip, class_word: str):
        self.clip = clip
        self.class_word = class_word
        self.marker, self.marker_id = pick_marker(clip)

    def text(self, template: str) -> str:
        return template.replace("{token}", self.marker).replace("{class_word}", self.class_word)

    def encode(self, template: str, vector: torch.Tensor):
        """[1, 77, D] conditioning (with grad to ``vector`` when it requires grad) and pooled output."""
        tokens = self.clip.tokenize(self.text(template))
        with inject_vector(self.clip, self.marker_id, vector):
            out = self.clip.encode_from_tokens(tokens, return_pooled=True)
        return out

    def conditioning(self, template: str, vector: torch.Tensor):
        """A ComfyUI CONDITIONING (normal tensors, no grad) for sampling."""
        with normal_tensors(), torch.no_grad():
            cond, pooled = self.encode(template, vector.detach())
            return [[cond.detach().clone(), {"pooled_output": None if pooled is None else pooled.detach().clone()}]]


@contextlib.contextmanager
def posterior_mean(vae):
    """Within the block, ``vae.encode`` gives the mean of the posterior: the March 2024 host's VAE samples it
    (from torch's global generator), later hosts already take the mean. The VAE is as it was afterwards."""
    regulariser = getattr(getattr(vae, "first_stage_model", None), "regularization", None)
    sampling = getattr(regulariser, "sample", None)
    if sampling is True:
        regulariser.sample = False
    try:
        yield
    finally:
        if sampling is True:
            regulariser.sample = True


def reference_pixels(images: torch.Tensor) -> torch.Tensor:
    """The reference photos IMAGE [B, H, W, C] checked (at least one, at least 64x64) and cropped to RGB with
    sides a multiple of 8."""
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[0] == 0:
        raise TrainingError("reference_images must be an IMAGE batch [B, H, W, C] with at least one photo.")
    h, w = (images.shape[1] // 8) * 8, (images.shape[2] // 8) * 8
    if h < 64 or w < 64:
        raise TrainingError(f"reference images are too small ({images.shape[2]}x{images.shape[1]}); use at least 64x64.")
    return images[:, :h, :w, :3]


def encode_references(vae, images: torch.Tensor, base_model, seed: int = 0) -> torch.Tensor:
    """Reference photos IMAGE [B, H, W, C] -> model-space latents [B, 4, h, w] (normal tensors): the means of
    the VAE's posterior, the same on every host. (``seed`` is unused: nothing is drawn.)"""
    rgb = reference_pixels(images)
    with torch.no_grad(), posterior_mean(vae):
        latents = vae.encode(rgb)
    latents = normal_copy(latents)
    with normal_tensors():
        return base_model.process_latent_in(latents).float()


@dataclass
class Draw:
    """One textual-inversion example: photos (by index), flips, timesteps, noise and a prompt template."""
    index: list
    flip: list
    t: torch.Tensor
    noise: torch.Tensor
    template: str


def draw_batch(rng: random.Random, gen: torch.Generator, latents: torch.Tensor, batch_size: int) -> Draw:
    idx = [rng.randrange(latents.shape[0]) for _ in range(batch_size)]
    flip = [rng.random() < 0.5 for _ in idx]
    template = TI_TEMPLATES[rng.randrange(len(TI_TEMPLATES))]
    t = torch.randint(0, 1000, (batch_size,), generator=gen)
    noise = torch.randn((batch_size,) + tuple(latents.shape[1:]), generator=gen)
    return Draw(idx, flip, t, noise, template)


class NoiseLoss:
    """The noise-prediction loss of a token vector on the reference latents (model loaded, normal tensors).
    ``regions`` gives the diffusion model's layers checkpointing covers (the UNet's here)."""

    regions = staticmethod(unet_regions)

    def __init__(self, model, prompts: "TokenPrompts", latents: torch.Tensor, precision, checkpointing):
        self.base_model = model.model
        self.prompts = prompts
        self.latents = latents
        self.precision = precision
        self.choice = CheckpointChoice(checkpointing, device_of(self.base_model, fallback=latents.device),
                                       "token stage")
        self.device = device_of(self.base_model, fallback=latents.device)
        self.dtype = self.base_model.get_dtype() if hasattr(self.base_model, "get_dtype") else torch.float32

    def photos(self, draw: Draw) -> torch.Tensor:
        """The draw's latents, flipped left to right where the draw says."""
        x0 = self.latents[draw.index].clone()
        for b, f in enumerate(draw.flip):
            if f:
                x0[b] = x0[b].flip(-1)
        return x0

    def denoised(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The model's denoised estimate (``apply_model``) for the batch ``x_t`` at ``sigma`` [B], prompt ``cond``."""
        context = cond.expand(x_t.shape[0], -1, -1)
        with self.choice.checkpointed(self.regions(self.base_model.diffusion_model)), \
                self.precision.autocast():
            return self.base_model.apply_model(x_t.to(self.device, self.dtype), sigma.to(self.device),
                                               c_crossattn=context.to(self.device, self.dtype))

    def __call__(self, vector: torch.Tensor, draw: Draw) -> torch.Tensor:
        x0 = self.photos(draw)
        cond, _ = self.prompts.encode(draw.template, vector)
        sigma = self.base_model.model_sampling.sigma(draw.t.float()).to(torch.float32)
        x_t = x0 + draw.noise * sigma.view(-1, 1, 1, 1)
        denoised = self.denoised(x_t, sigma, cond)
        eps = (x_t.to(self.device) - denoised.float()) / sigma.to(self.device).view(-1, 1, 1, 1)
        return F.mse_loss(eps, draw.noise.to(self.device))


def _prepare(model, clip, vae, images, class_word: str, settings: TISettings):
    """(TokenPrompts, NoiseLoss) with ``model`` loaded for the passes, without any motion model."""
    import comfy.model_management

    from .motion_model import without_motion_models

    model = without_motion_models(model)
    prompts = TokenPrompts(clip, class_word)
    latents = encode_references(vae, images, model.model, settings.seed)
    precision = amp.resolve(settings.precision, device_of(model), compute_dtype_of(model))
    # both loaded now, before the gradient window (CLIP's own load in each step then finds it loaded)
    comfy.model_management.load_models_gpu([model, clip.patcher])
    return prompts, NoiseLoss(model, prompts, latents, precision, settings.gradient_checkpointing)


@dataclass(frozen=True)
class TokenStage:
    """What the token stage's loop needs of a model family: the starting vector (``start(clip, class_word)``),
    the prompts (``prompts(clip, class_word)``), the reference latents and loss (``prepare(model, clip, vae,
    images, class_word, settings)`` -> (prompts, loss)) and the diffusion model's layers Cancel looks in
    (``layers(diffusion_model)``). SD1.5's is :data:`SD15_STAGE`; Wan's is in :mod:`.wan_token`."""
    start: object
    prompts: object
    prepare: object
    layers: object


SD15_STAGE = TokenStage(class_word_vector, TokenPrompts, _prepare, unet_regions)


def train_token(model, clip, vae, images, class_word: str, settings: TISettings, progress=None, check_interrupt=None,
                checkpoints=None, resume=None):
    """Learn the identity vector; returns (vector [D] fp32, TokenPrompts, losses).

    ``checkpoints``: a :class:`~.run_state.StageCheckpoints` written to when due; ``resume``: ``(steps done,
    tensors, extra)`` of such a checkpoint, from which training continues exactly (the draws made are replayed).
    """
    return run_token_stage(SD15_STAGE, model, clip, vae, images, class_word, settings, progress, check_interrupt,
                           checkpoints, resume)


def run_token_stage(stage: TokenStage, model, clip, vae, images, class_word: str, settings: TISettings,
                    progress=None, check_interrupt=None, checkpoints=None, resume=None):
    """The token stage's loop for ``stage``'s model family (see :func:`train_token`)."""
    from .run_state import optimizer_tensors, restore_optimizer

    from .identity_setup import token_streams

    settings.check()
    vector0 = stage.start(clip, class_word)
    losses, start = [], 0
    with normal_tensors():
        vector = torch.nn.Parameter(vector0.clone())
        if settings.steps == 0:
            return vector.detach().clone(), stage.prompts(clip, class_word), losses
        optimizer = torch.optim.AdamW([vector], lr=settings.lr, weight_decay=0.0)
        rng, gen = token_streams(settings.seed)
        if resume is not None:
            start, tensors, extra = resume
            with torch.no_grad():
                vector.copy_(tensors["token.vector"].reshape(vector.shape))
            restore_optimizer(optimizer, [vector], tensors, "token.adamw")
            losses = list(extra.get("token_loss", []))[:start]
    prompts, loss_of = stage.prepare(model, clip, vae, images, class_word, settings)
    if resume is not None:
        loss_of.precision.restore_scaler(resume[2].get("token_grad_scaler"))
    check = check_interrupt or (lambda: None)
    with normal_tensors():
        for _ in range(start):   # the draws the resumed steps made, so the rest continue the same streams
            draw_batch(rng, gen, loss_of.latents, settings.batch_size)
    with normal_tensors(), gradient_window(model.model.diffusion_model, clip.cond_stage_model) as window, \
            checked_in_layers(stage.layers(model.model.diffusion_model), check):
        for step in range(start, settings.steps):
            check()
            batch = draw_batch(rng, gen, loss_of.latents, settings.batch_size)
            with loss_of.choice.measured():
                loss = with_fallback(window, lambda: loss_of(vector, batch))
                check()
                optimizer.zero_grad(set_to_none=True)
                loss_of.precision.backward_and_step(loss, optimizer)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, losses[-1])
            if checkpoints is not None and checkpoints.due(step + 1, settings.steps):
                checkpoints.save(step + 1, {"token.vector": vector,
                                            **optimizer_tensors(optimizer, [vector], "token.adamw")},
                                 {"token_loss": losses, "token_grad_scaler": loss_of.precision.scaler_state()})
        return vector.detach().clone(), prompts, losses


def evaluation_loss(model, clip, vae, images, class_word: str, vector: torch.Tensor, draws: int = 8, seed: int = 1234,
                    batch_size: int = 4, settings: TISettings | None = None) -> float:
    """Mean noise-prediction loss of ``vector`` on the first ``draws`` batches training draws for ``seed``
    (:func:`train_token` with that seed and batch size makes the very same ones): deterministic."""
    return stage_evaluation_loss(SD15_STAGE, model, clip, vae, images, class_word, vector, draws, seed, batch_size,
                                 settings)


def stage_evaluation_loss(stage: TokenStage, model, clip, vae, images, class_word: str, vector: torch.Tensor,
                          draws: int = 8, seed: int = 1234, batch_size: int = 4,
                          settings: TISettings | None = None) -> float:
    """:func:`evaluation_loss` for ``stage``'s model family."""
    from .identity_setup import token_streams

    settings = settings or TISettings(precision="fp32")
    with normal_tensors():
        rng, gen = token_streams(seed)
    prompts, loss_of = stage.prepare(model, clip, vae, images, class_word, settings)
    with normal_tensors(), torch.no_grad(), \
            gradient_window(model.model.diffusion_model, clip.cond_stage_model):
        v = vector.detach().float().clone()
        total = sum(float(loss_of(v, draw_batch(rng, gen, loss_of.latents, batch_size))) for _ in range(draws))
    return total / draws
