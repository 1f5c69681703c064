"""Wan diffusion-model weights as core Wan files hold them (``blocks.N.self_attn.q.weight`` ...), mapped onto
diffusers' ``WanTransformer3DModel`` (``blocks.N.attn1.to_q.weight`` ...), and its config read from the shapes.

The layouts, module by module (core's names on the left; every tensor keeps its shape):

- ``patch_embedding`` -> ``patch_embedding``; ``head.head`` -> ``proj_out``; ``head.modulation`` ->
  ``scale_shift_table``;
- ``text_embedding.0`` / ``.2`` -> ``condition_embedder.text_embedder.linear_1`` / ``linear_2``;
  ``time_embedding.0`` / ``.2`` -> ``condition_embedder.time_embedder.linear_1`` / ``linear_2``;
  ``time_projection.1`` -> ``condition_embedder.time_proj``;
- in each block: ``self_attn`` -> ``attn1`` and ``cross_attn`` -> ``attn2`` (``q/k/v`` -> ``to_q/to_k/to_v``,
  ``o`` -> ``to_out.0``, ``norm_q/norm_k`` kept); ``norm3`` (the cross-attention's norm) -> ``norm2``;
  ``ffn.0`` / ``ffn.2`` -> ``ffn.net.0.proj`` / ``ffn.net.2``; ``modulation`` -> ``scale_shift_table``.

Text-to-video models only (Wan 2.1 T2V, Wan 2.2 T2V experts and TI2V 5B); image-conditioned keys (``img_emb``,
``k_img``) are refused.  Heads are width / 128, as in every Wan model.
"""
from __future__ import annotations

import re

from .errors import EngineError

_TOP = {
    "patch_embedding.": "patch_embedding.",
    "head.head.": "proj_out.",
    "text_embedding.0.": "condition_embedder.text_embedder.linear_1.",
    "text_embedding.2.": "condition_embedder.text_embedder.linear_2.",
    "time_embedding.0.": "condition_embedder.time_embedder.linear_1.",
    "time_embedding.2.": "condition_embedder.time_embedder.linear_2.",
    "time_projection.1.": "condition_embedder.time_proj.",
}
_BLOCK = {
    "self_attn.": "attn1.", "cross_attn.": "attn2.", "norm3.": "norm2.", "ffn.0.": "ffn.net.0.proj.",
    "ffn.2.": "ffn.net.2.",
}
_ATTN = {"q.": "to_q.", "k.": "to_k.", "v.": "to_v.", "o.": "to_out.0.", "norm_q.": "norm_q.", "norm_k.": "norm_k."}
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.*)$")
HEAD_DIM = 128
PREFIXES = ("model.diffusion_model.", "diffusion_model.")


def _block_key(rest: str) -> str | None:
    if rest == "modulation":
        return "scale_shift_table"
    for core, diffusers in _BLOCK.items():
        if rest.startswith(core):
            tail = rest[len(core):]
            if diffusers.startswith("attn"):
                for a, b in _ATTN.items():
                    if tail.startswith(a):
                        return diffusers + b + tail[len(a):]
                return None
            return diffusers + tail
    return None


def core_to_diffusers(sd: dict) -> dict:
    """A core Wan state dict (with or without ``model.diffusion_model.``) in diffusers' key layout."""
    out, foreign = {}, []
    for key, value in sd.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        new = None
        if key == "head.modulation":
            new = "scale_shift_table"
        else:
            for core, diffusers in _TOP.items():
                if key.startswith(core):
                    new = diffusers + key[len(core):]
                    break
            m = _BLOCK_KEY.match(key)
            if new is None and m:
                rest = _block_key(m[2])
                new = None if rest is None else f"blocks.{m[1]}.{rest}"
        if new is None:
            foreign.append(key)
        else:
            out[new] = value
    if foreign:
        raise EngineError(f"{len(foreign)} weight(s) that a Wan text-to-video diffusion model does not have, e.g. "
                          f"{sorted(foreign)[:3]}: give a Wan 2.1 / 2.2 T2V (or TI2V 5B) diffusion model.")
    return out


def transformer_config(sd: dict) -> dict:
    """``WanTransformer3DModel``'s config for weights in diffusers' layout (:func:`core_to_diffusers`)."""
    try:
        patch = sd["patch_embedding.weight"]
        dim, in_channels = int(patch.shape[0]), int(patch.shape[1])
        layers = 1 + max(int(m[1]) for m in map(_BLOCK_KEY.match, sd) if m)
        ffn_dim = int(sd["blocks.0.ffn.net.0.proj.weight"].shape[0])
        text_dim = int(sd["condition_embedder.text_embedder.linear_1.weight"].shape[1])
        freq_dim = int(sd["condition_embedder.time_embedder.linear_1.weight"].shape[1])
        out_channels = int(sd["proj_out.weight"].shape[0]) // (int(patch.shape[2]) * int(patch.shape[3]) *
                                                               int(patch.shape[4]))
    except (KeyError, ValueError) as exc:
        raise EngineError(f"not the weights of a Wan diffusion model (no {exc}).") from None
    if dim % HEAD_DIM:
        raise EngineError(f"a Wan model's width is a multiple of {HEAD_DIM} (got {dim}).")
    return dict(patch_size=tuple(int(s) for s in patch.shape[2:]), num_attention_heads=dim // HEAD_DIM,
                attention_head_dim=HEAD_DIM, in_channels=in_channels, out_channels=out_channels, text_dim=text_dim,
                freq_dim=freq_dim, ffn_dim=ffn_dim, num_layers=layers, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6)
