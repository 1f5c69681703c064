"""Stage 1 on core Wan 2.1 / 2.2: the identity token, one learned vector in umT5-XXL's input space.

The Wan twin of :mod:`.textual_inversion` (same settings, streams, loop, checkpoints and results: the loop is
:func:`.textual_inversion.run_token_stage`); what differs on Wan:

- **The text encoder is core's umT5-XXL** (``CLIPLoader`` type ``wan``); any other CLIP is refused with a
  clear error. The vector starts from the mean of the class word's umT5 token embeddings (the rows of umT5's
  ``shared`` table for the word's SentencePiece pieces).
- **How the vector enters umT5: as an embedding in core's own token list**, where a loaded ``embedding:<name>``
  file enters. The prompt templates are written with ``embedding:<placeholder>`` in place of ``{token}`` and
  tokenized by the CLIP's own umT5 tokenizer (a copy that reads a private folder holding the placeholder
  file); the placeholder's entry in the token list is then replaced by the vector, and core's
  ``encode_from_tokens`` puts it into umT5's input sequence (``torch.cat``, so the gradient reaches it). No
  marker word is needed (SD1.5's marker words are no single umT5 piece in general: in the tests' umT5
  tokenizer none of them is), and the vector sits exactly where core puts the saved file's vector.
- **The loss is Wan's flow-matching loss.** Each reference photo is one single-frame video: core's Wan VAE
  encodes it to one latent frame (the posterior mean: core's Wan VAE returns the mean). A draw's timestep
  index ``t`` (0-999, the token stage's own stream) picks ``sigma = model_sampling.sigmas[t]``, the model's
  own 1000 training noise levels at the shift the MODEL carries (core's Wan default, or what ModelSamplingSD3
  set). ``x_t = sigma * noise + (1 - sigma) * x0`` (core's ``CONST.noise_scaling``); core's ``apply_model``
  returns the denoised estimate ``x_t - sigma * v`` (``CONST.calculate_denoised``), so the model's velocity
  is ``v = (x_t - denoised) / sigma`` and its regression target is ``noise - x0``. Loss: the mean squared
  error between them.
- Cancel is looked at before each Wan block; gradient checkpointing (when chosen) covers the Wan blocks and
  umT5's layers. umT5 runs with gradient (the vector is in its input), so without checkpointing backward keeps
  every umT5 layer's activations, and with the fp8 umT5 file every layer's cast copy of its weights too: umT5-XXL
  whole in fp16, 10.6 GiB (``bench/bench_wan_train.py --estimate``).

umT5, the Wan model and the VAE stay frozen; only the vector trains (lr, batch and steps from
:class:`~.textual_inversion.TISettings`).

**Using the vector in a prompt.** The file :func:`save_wan_token` writes is laid out as core's ``load_embed``
reads it for umT5 (one ``[1, 4096]`` fp32 tensor under the key ``umt5xxl``, core's umT5 embedding key). But
core's umT5 tokenizer (``comfy/text_encoders/wan.py``, ComfyUI 0.3.64, and the newest version we could read)
does not hand the embeddings folder to its base class, so a stock *CLIP Text Encode* on a Wan CLIP never
looks ``embedding:<name>`` up: it encodes the words "embedding:<name>" as text. :func:`clip_reading_embeddings`
gives a clone of the CLIP whose umT5 tokenizer has the embeddings folders; a stock *CLIP Text Encode* on that
clone reads ``embedding:<name>`` through core's own code and gives the conditioning training used, bit for bit.
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
import weakref

import torch
import torch.nn.functional as F

from ..sia import families
from . import precision as amp
from .checkpointing import t5_regions, wan_regions
from .devices import compute_dtype_of, device_of
from .errors import TrainingError
from .identity_files import UMT5_TOKEN_KEY, write_token
from .inference_tensors import normal_copy, normal_tensors
from .textual_inversion import (Draw, NoiseLoss, TISettings, TokenPrompts, TokenStage, reference_pixels,
                                run_token_stage, stage_evaluation_loss)

EMBEDDING_KEY = UMT5_TOKEN_KEY     # core's umT5 tokenizer's embedding key: what load_embed looks for in a file
PLACEHOLDER = "pv_identity_token"  # the name training's prompts use for the vector


def umt5_tokenizer(clip):
    """The umT5 tokenizer of a core Wan CLIP (an ``SDTokenizer`` with the ``umt5xxl`` embedding key), or a
    clear error for any other text encoder."""
    cond = getattr(clip, "cond_stage_model", None)
    tokenizer = getattr(clip, "tokenizer", None)
    inner = getattr(tokenizer, getattr(tokenizer, "clip", ""), None)
    if (getattr(inner, "embedding_key", None) != EMBEDDING_KEY or getattr(tokenizer, "clip_name", None) != EMBEDDING_KEY
            or not hasattr(cond, EMBEDDING_KEY)):
        names = [n for n in ("clip_l", "clip_g", "clip_h", "t5xxl", "umt5xxl") if hasattr(cond, n)]
        raise TrainingError(
            f"the CLIP input is not Wan's umT5-XXL text encoder (it has {names or type(cond).__name__}). "
            "Connect umT5-XXL loaded with Load CLIP, type wan (umt5_xxl_fp8_e4m3fn_scaled.safetensors or "
            "umt5_xxl_fp16.safetensors).")
    return inner


def umt5_table(clip) -> torch.nn.Module:
    """umT5's token-embedding table (``shared``) of a core Wan CLIP."""
    umt5_tokenizer(clip)
    return getattr(clip.cond_stage_model, EMBEDDING_KEY).transformer.get_input_embeddings()


def wan_class_word_vector(clip, class_word: str) -> torch.Tensor:
    """The mean of umT5's embeddings of the class word's pieces (fp32 [4096])."""
    inner = umt5_tokenizer(clip)
    special = {inner.end_token, inner.pad_token}
    ids = [i for i in inner.tokenizer(class_word)["input_ids"] if i not in special] if class_word.strip() else []
    if not ids:
        raise TrainingError(f"class_word {class_word!r} gives no tokens; use a plain word such as man, woman or person.")
    with normal_tensors():
        return umt5_table(clip).weight[ids].detach().float().mean(0).clone()


def clip_reading_embeddings(clip, directories=None):
    """A clone of the Wan CLIP ``clip`` whose umT5 tokenizer reads ``embedding:<name>`` from ``directories``
    (default: ComfyUI's embeddings folders), through core's own tokenizer code and ``load_embed``. ``clip``
    itself is left as it is (its tokenizer and the clone's are different objects; the text model is shared)."""
    inner = umt5_tokenizer(clip)
    if directories is None:
        import folder_paths

        directories = folder_paths.get_folder_paths("embeddings")
    directories = [os.fspath(d) for d in ([directories] if isinstance(directories, (str, os.PathLike)) else directories)]
    reading = copy.copy(inner)
    reading.embedding_directory = directories
    tokenizer = copy.copy(clip.tokenizer)
    setattr(tokenizer, tokenizer.clip, reading)
    clone = clip.clone()
    clone.tokenizer = tokenizer
    return clone


def save_wan_token(path: str, vector: torch.Tensor) -> str:
    """Write ``vector`` as a umT5 embedding file (safetensors, ``umt5xxl``: [1, 4096] fp32), atomically."""
    width = vector.numel()
    if width != 4096:
        raise TrainingError(f"a umT5 token has 4096 numbers (got {width}): this vector is not from the Wan token stage.")
    return write_token(path, vector, key=EMBEDDING_KEY)


class WanTokenPrompts(TokenPrompts):
    """Encodes prompt templates with the identity vector in place of ``{token}`` through core's umT5 (see the
    module's docstring). ``text(template)`` is the prompt with ``embedding:<placeholder>`` for the token."""

    def __init__(self, clip, class_word: str):
        inner = umt5_tokenizer(clip)
        self.clip = clip
        self.class_word = class_word
        self.marker = f"{inner.embedding_identifier}{PLACEHOLDER}"
        self.marker_id = None
        self._folder = tempfile.mkdtemp(prefix="pv-wan-token-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)
        save_wan_token(os.path.join(self._folder, f"{PLACEHOLDER}.safetensors"), torch.zeros(4096))
        self._reading = clip_reading_embeddings(clip, [self._folder])
        self._tokens = {}

    def tokens(self, template: str) -> dict:
        """Core's token list of the template's prompt; the placeholder's entry is a tensor (the only one: the
        private folder holds nothing else)."""
        if template not in self._tokens:
            tokens = self._reading.tokenize(self.text(template))
            found = sum(torch.is_tensor(t) for batches in tokens.values() for batch in batches for t, *_ in batch)
            if found != template.count("{token}"):
                raise TrainingError(
                    f"the prompt {template!r} joins {{token}} to other characters, so umT5's tokenizer cannot read "
                    "the token there: on Wan write {token} as a word of its own, e.g. '{token} {class_word} smiling'.")
            self._tokens[template] = tokens
        return self._tokens[template]

    def encode(self, template: str, vector: torch.Tensor):
        """[1, L, 4096] conditioning (with grad to ``vector`` when it requires grad) and pooled output (None)."""
        filled = {key: [[((vector if torch.is_tensor(t) else t), *rest) for t, *rest in batch] for batch in batches]
                  for key, batches in self.tokens(template).items()}
        return self.clip.encode_from_tokens(filled, return_pooled=True)


def encode_wan_references(vae, images: torch.Tensor, base_model) -> torch.Tensor:
    """Reference photos IMAGE [B, H, W, C] -> Wan latents [B, C, 1, h, w] (normal tensors): each photo a
    single-frame video through core's Wan VAE, in the model's latent space."""
    channels = int(base_model.latent_format.latent_channels)
    if getattr(vae, "latent_dim", 2) != 3 or getattr(vae, "latent_channels", None) != channels:
        raise TrainingError(
            f"the VAE is not the Wan VAE of this MODEL (it makes {getattr(vae, 'latent_channels', '?')}-channel "
            f"{'video' if getattr(vae, 'latent_dim', 2) == 3 else 'image'} latents; the MODEL takes {channels}-channel "
            "video latents). Connect wan_2.1_vae for Wan 2.1 and the Wan 2.2 A14B experts, wan2.2_vae for Wan 2.2 "
            "TI2V 5B.")
    rgb = reference_pixels(images)
    with torch.no_grad():
        latents = torch.cat([normal_copy(vae.encode(rgb[i:i + 1])) for i in range(rgb.shape[0])])
    with normal_tensors():
        return base_model.process_latent_in(latents).float()


class FlowLoss(NoiseLoss):
    """Wan's flow-matching loss of a token vector on the reference latents (see the module's docstring)."""

    regions = staticmethod(wan_regions)

    def __init__(self, model, prompts, latents, precision, checkpointing):
        import comfy.model_sampling

        super().__init__(model, prompts, latents, precision, checkpointing)
        sampling = model.get_model_object("model_sampling")
        if not isinstance(sampling, comfy.model_sampling.CONST):
            raise TrainingError("the MODEL does not sample by flow matching (core's CONST sampling), as Wan does: "
                                "connect the Wan model itself (a ModelSamplingSD3 shift on it is fine).")
        with normal_tensors():
            self.sigmas = sampling.sigmas.detach().float().cpu().clone()
        self.sampling = sampling

    def __call__(self, vector: torch.Tensor, draw: Draw) -> torch.Tensor:
        x0 = self.photos(draw)
        encoder = getattr(self.prompts.clip.cond_stage_model, EMBEDDING_KEY).transformer
        with self.choice.checkpointed(t5_regions(encoder)):
            cond, _ = self.prompts.encode(draw.template, vector)
        sigma = self.sigmas[draw.t]
        x_t = self.sampling.noise_scaling(sigma, draw.noise, x0)
        denoised = self.denoised(x_t, sigma, cond)
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        velocity = (x_t.to(self.device) - denoised.float()) / sigma.to(self.device).view(shape)
        return F.mse_loss(velocity, (draw.noise - x0).to(self.device))


def _check_wan(model) -> None:
    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if diffusion_model is None or families.family_of(diffusion_model) != families.WAN:
        raise TrainingError("the Wan token stage needs a core Wan MODEL (Wan 2.1 / 2.2, loaded with Load Diffusion "
                            "Model; for Wan 2.2 A14B the low-noise expert).")


def _prepare_wan(model, clip, vae, images, class_word: str, settings: TISettings):
    """(WanTokenPrompts, FlowLoss) with ``model`` and ``clip`` loaded for the passes."""
    import comfy.model_management

    _check_wan(model)
    prompts = WanTokenPrompts(clip, class_word)
    latents = encode_wan_references(vae, images, model.model)
    precision = amp.resolve(settings.precision, device_of(model), compute_dtype_of(model))
    comfy.model_management.load_models_gpu([model, clip.patcher])
    return prompts, FlowLoss(model, prompts, latents, precision, settings.gradient_checkpointing)


WAN_STAGE = TokenStage(wan_class_word_vector, WanTokenPrompts, _prepare_wan, wan_regions)


def train_wan_token(model, clip, vae, images, class_word: str, settings: TISettings, progress=None,
                    check_interrupt=None, checkpoints=None, resume=None):
    """Learn the identity vector on core Wan; returns (vector [4096] fp32, WanTokenPrompts, losses), as
    :func:`.textual_inversion.train_token` does (same callbacks, checkpoints and resume)."""
    _check_wan(model)
    umt5_tokenizer(clip)
    return run_token_stage(WAN_STAGE, model, clip, vae, images, class_word, settings, progress, check_interrupt,
                           checkpoints, resume)


def wan_evaluation_loss(model, clip, vae, images, class_word: str, vector: torch.Tensor, draws: int = 8,
                        seed: int = 1234, batch_size: int = 4, settings: TISettings | None = None) -> float:
    """Mean flow-matching loss of ``vector`` on the first ``draws`` batches :func:`train_wan_token` draws for
    ``seed`` and ``batch_size``: deterministic (as :func:`.textual_inversion.evaluation_loss`)."""
    return stage_evaluation_loss(WAN_STAGE, model, clip, vae, images, class_word, vector, draws, seed, batch_size,
                                 settings)
