"""Wan 2.1 / 2.2 as diffusers classes for the engine: ``WanTransformer3DModel``, ``AutoencoderKLWan`` and
umT5 (``UMT5EncoderModel`` + its tokenizer), from a local diffusers Wan folder or given in Python.

- :class:`WanEngineModels` holds them with the shift of the flow-matching schedule (core's Wan default 8)
  and gives the three things training and generation need: the text embedding of a prompt
  (:meth:`~WanEngineModels.encode`), the model's denoised prediction at a noise level
  (:meth:`~WanEngineModels.denoised`: ``x - sigma * v`` for the predicted velocity ``v``, as core's flow
  sampling computes it) and the decode of latents (:meth:`~WanEngineModels.decode`, Wan's latent
  normalisation undone first).
- :func:`load_wan_folder`: a diffusers Wan pipeline folder (``transformer/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``), local only, nothing downloaded.
- :func:`transformer_from_core`: a core Wan diffusion-model file's weights (what ComfyUI's
  ``models/diffusion_models`` holds) as a ``WanTransformer3DModel`` (:mod:`.wan_checkpoint_keys`).

Prompts are encoded as diffusers' Wan pipeline encodes them: umT5 over at most ``text_length`` (512) tokens,
the states after the prompt's last token set to zero.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from .errors import EngineError
from .wan_attention import use_plain_attention_where_needed

DEFAULT_SHIFT = 8.0     # core's Wan 2.1 T2V default (ModelSamplingSD3 sets another)
TEXT_LENGTH = 512


def split_at_token(text: str, name: str = "") -> list:
    """``text`` cut where it names the identity token: ``{token}`` or ``embedding:<name>`` (the trigger phrase the
    Wan Train node saves); one piece when it names none."""
    pattern = r"\{token\}"
    if name:
        pattern += r"|embedding:" + re.escape(name) + r"(?:\.safetensors)?\b"
    return re.split(pattern, text)


@dataclass
class WanEngineModels:
    transformer: torch.nn.Module          # diffusers WanTransformer3DModel
    vae: torch.nn.Module                  # diffusers AutoencoderKLWan
    text_encoder: torch.nn.Module | None = None   # transformers UMT5EncoderModel (None: prompts given as tensors)
    tokenizer: object = None
    shift: float = DEFAULT_SHIFT
    text_length: int = TEXT_LENGTH
    source: str = "(in memory)"

    @property
    def latent_channels(self) -> int:
        return int(self.transformer.config.in_channels)

    @property
    def downscale(self) -> int:
        return int(getattr(self.vae.config, "scale_factor_spatial", None) or 8)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple:
        return (1, self.latent_channels, (frames - 1) // 4 + 1, height // self.downscale, width // self.downscale)

    def encode(self, text: str, token: torch.Tensor | None = None, name: str = "") -> torch.Tensor:
        """umT5's states for ``text`` [1, text_length, width] (fp32), zero after the prompt's tokens.
        ``token``: the identity vector [4096] (the node's Wan token stage), put into umT5's input sequence where
        the prompt says ``{token}`` or ``embedding:<name>``, as core puts a loaded embedding."""
        if self.text_encoder is None or self.tokenizer is None:
            raise EngineError("internal: these Wan models have no text encoder; give prompt embeddings instead")
        device = next(self.text_encoder.parameters()).device
        pieces = split_at_token(text, name)
        if token is None or len(pieces) == 1:
            tokens = self.tokenizer([text], padding="max_length", max_length=self.text_length, truncation=True,
                                    add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
            ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
            with torch.no_grad():
                states = self.text_encoder(ids, mask).last_hidden_state.float()
            return states * mask[..., None].to(states.dtype)
        ids, slots = [], []
        for i, piece in enumerate(pieces):
            if i:
                slots.append(len(ids))
                ids.append(self.tokenizer.pad_token_id)       # its row is replaced by the vector below
            if piece.strip():   # each piece as words of its own (core tokenizes word by word too)
                ids += list(self.tokenizer(piece.strip(), add_special_tokens=False).input_ids)
        ids = ids[:self.text_length - 1] + [self.tokenizer.eos_token_id]
        slots = [s for s in slots if s < len(ids) - 1]
        used = len(ids)
        ids = torch.tensor([ids + [self.tokenizer.pad_token_id] * (self.text_length - used)], device=device)
        mask = (torch.arange(self.text_length, device=device) < used).long()[None]
        table = self.text_encoder.get_input_embeddings()
        with torch.no_grad():
            embeds = table(ids)
            embeds[0, slots] = token.reshape(-1).to(embeds.device, embeds.dtype)
            states = self.text_encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state.float()
        return states * mask[..., None].to(states.dtype)

    def denoised(self, x: torch.Tensor, sigma, context: torch.Tensor) -> torch.Tensor:
        """The denoised latents for ``x`` [B, C, T, h, w] at noise level ``sigma`` (a float), fp32."""
        from .flow_schedule import timestep

        dtype = next(self.transformer.parameters()).dtype
        t = timestep(sigma).to(x.device).expand(x.shape[0])
        v = self.transformer(x.to(dtype), t, encoder_hidden_states=context.to(x.device, dtype)).sample.float()
        return x - float(sigma) * v

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [1, C, T, h, w] -> video [1, 3, F, H, W] in 0..1 (with gradient when enabled)."""
        config = self.vae.config
        mean = torch.tensor(config.latents_mean, dtype=torch.float32, device=latents.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(config.latents_std, dtype=torch.float32, device=latents.device).view(1, -1, 1, 1, 1)
        z = latents.float() * std + mean
        pixels = self.vae.decode(z.to(next(self.vae.parameters()).dtype)).sample.float()
        return ((pixels + 1) / 2).clamp(0, 1)

    def modules(self):
        return [m for m in (self.transformer, self.vae, self.text_encoder) if m is not None]

    def to(self, device, dtype=None):
        for module in self.modules():
            module.to(device=device, dtype=dtype)
        return self

    def freeze(self):
        for module in self.modules():
            module.requires_grad_(False)
            module.eval()
        return self


def load_wan_folder(folder: str, shift: float = DEFAULT_SHIFT, dtype=torch.float32) -> WanEngineModels:
    """A local diffusers Wan pipeline folder (text-to-video)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    if not os.path.isdir(folder):
        raise EngineError(f"--checkpoint {folder!r}: with --backbone wan give a diffusers Wan folder (transformer/, "
                          "vae/, text_encoder/, tokenizer/), e.g. Wan2.1-T2V-1.3B-Diffusers.")
    for part in ("transformer", "vae", "text_encoder", "tokenizer"):
        if not os.path.isdir(os.path.join(folder, part)):
            raise EngineError(f"{folder} is not a diffusers Wan folder (no {part}/ in it).")
    if os.path.isdir(os.path.join(folder, "transformer_2")):
        raise EngineError(f"{folder} is a two-expert Wan 2.2 A14B folder (transformer/ and transformer_2/); the engine "
                          "runs one Wan model (Wan 2.1 T2V 1.3B / 14B). Train A14B identities with the node on the "
                          "low-noise expert.")
    transformer = use_plain_attention_where_needed(
        WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", local_files_only=True))
    vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", local_files_only=True)
    text = UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "tokenizer"), local_files_only=True)
    models = WanEngineModels(transformer, vae, text, tokenizer, shift=shift, source=folder)
    return models.to("cpu", dtype).freeze()


def transformer_from_core(sd: dict, path: str = "(in memory)"):
    """A ``WanTransformer3DModel`` holding a core Wan diffusion model's weights (fp32, eval, frozen)."""
    from diffusers import WanTransformer3DModel

    from . import wan_checkpoint_keys as keys

    mapped = keys.core_to_diffusers(sd)
    transformer = use_plain_attention_where_needed(WanTransformer3DModel.from_config(keys.transformer_config(mapped)))
    missing, unexpected = transformer.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=False)
    if missing or unexpected:
        raise EngineError(f"{path}: the Wan diffusion model does not have the layout of Wan 2.1 / 2.2 T2V "
                          f"({len(missing)} missing, {len(unexpected)} unexpected weights, e.g. "
                          f"{(missing + unexpected)[:3]}).")
    return transformer.float().eval().requires_grad_(False)
