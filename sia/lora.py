"""The LoRA math of the adapter: delta = up(down(x)) * scale."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lora_delta(x: torch.Tensor, down: torch.Tensor, up: torch.Tensor, scale: float) -> torch.Tensor:
    return F.linear(F.linear(x, down), up) * scale


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
