"""The LoRA math of the adapter: delta = up(down(x)) * scale."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lora_delta(x: torch.Tensor, down: torch.Tensor, up: torch.Tensor, scale: float) -> torch.Tensor:
    return F.linear(F.linear(x, down), up) * scale


def add_lora_delta(out: torch.Tensor, x: torch.Tensor, down: torch.Tensor, up: torch.Tensor,
                   scale: float) -> torch.Tensor:
    """``out + lora_delta(x, down, up, scale)`` in one fused matrix multiply-add (``addmm``): the same sum,
    two operations fewer per call (the scaling and the addition) and no full-size delta tensor."""
    rows = out.numel() // out.shape[-1]
    if rows == 0 or out.dtype != x.dtype:
        return out + lora_delta(x, down, up, scale)
    hidden = F.linear(x, down).reshape(rows, down.shape[0])
    return torch.addmm(out.reshape(rows, out.shape[-1]), hidden, up.t(), alpha=scale).reshape(out.shape)


class CastWeights:
    """Adapter weights cast to the device and dtype of the activations.

    Frozen weights are cast once per (device, dtype) and kept; trainable ones
    (requires_grad) are cast on every call so gradients reach the fp32 originals.
    """

    def __init__(self, down: torch.Tensor, up: torch.Tensor):
        self.down, self.up = down, up
        self._cache = {}

    def get(self, like: torch.Tensor):
        if self.down.requires_grad or self.up.requires_grad:
            return self.down.to(like.device, like.dtype), self.up.to(like.device, like.dtype)
        key = (like.device, like.dtype)
        pair = self._cache.get(key)
        if pair is None:
            pair = (self.down.to(like.device, like.dtype), self.up.to(like.device, like.dtype))
            self._cache = {key: pair}  # one entry: a model lives on one device at a time
        return pair
