"""Wan's attention for diffusers' ``WanTransformer3DModel`` on torch older than 2.5.

diffusers' attention dispatcher (0.35) always hands ``enable_gqa`` to torch's ``scaled_dot_product_attention``,
which torch gained in 2.5, so on torch 2.4 every Wan forward fails (diffusers issue #11959).  On such a torch
the engine gives each Wan attention layer :class:`PlainWanAttention`: the same computation for text-to-video
Wan (q/k/v, RMS norms on q and k, the rotary embedding on q and k, one ``scaled_dot_product_attention``, the
output projection), calling the layers as modules, so peft's LoRA on ``to_q/to_k/to_v`` acts as usual.  On
torch 2.5 and newer diffusers' own processor is kept.  tests/test_engine_wan.py compares the velocity with core
Wan's on both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import EngineError


def needs_plain_attention() -> bool:
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) < (2, 5)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary embedding on pairs of channels (x [B, L, heads, d]; cos/sin repeated per pair)."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([even * c - odd * s, even * s + odd * c], dim=-1).flatten(-2).type_as(x)


class PlainWanAttention:
    """A processor for diffusers' ``WanAttention`` (text-to-video layers only)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if getattr(attn, "add_k_proj", None) is not None:
            raise EngineError("image-conditioned Wan models are not supported by the engine; give a T2V model.")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(attn.to_k(context)).unflatten(2, (attn.heads, -1))
        v = attn.to_v(context).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            if not isinstance(rotary_emb, (tuple, list)):
                raise EngineError("internal: this diffusers version's Wan rotary embedding is not (cos, sin); use "
                                  "torch 2.5 or newer")
            q, k = _rotate(q, *rotary_emb), _rotate(k, *rotary_emb)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


def use_plain_attention_where_needed(transformer: torch.nn.Module) -> torch.nn.Module:
    """``transformer`` with :class:`PlainWanAttention` on every Wan attention layer when torch is older than 2.5."""
    if needs_plain_attention():
        processor = PlainWanAttention()
        for module in transformer.modules():
            if type(module).__name__ == "WanAttention":
                module.set_processor(processor)
    return transformer
