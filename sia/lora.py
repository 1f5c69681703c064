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


def _plain_linear(module) -> bool:
    """Whether ``module``'s forward is ``F.linear(x, module.weight, module.bias)`` on the tensors it holds: torch's
    Linear, or ComfyUI's (``comfy.ops``) when it casts nothing on the fly (no low-VRAM cast, no weight or bias
    functions of patches applied per call)."""
    if not isinstance(module, torch.nn.Linear):
        return False
    forward = type(module).forward
    if forward is not torch.nn.Linear.forward and type(module).__module__ != "comfy.ops":
        return False   # another pack's layer (quantised weights ...): its own forward
    return not (getattr(module, "comfy_cast_weights", False) or getattr(module, "weight_function", None)
                or getattr(module, "bias_function", None))


def merged_weight(module, x: torch.Tensor, down: torch.Tensor, up: torch.Tensor, scale: float,
                  trainable: bool = False):
    """``module.weight + scale * up @ down`` where one product with it gives the layer's output plus the delta
    (:func:`_plain_linear`, weights of ``x``'s dtype and device, nothing needing a gradient); None otherwise.
    ``trainable`` (the adapter is being trained): None outside inference mode too, where a checkpointed layer runs
    its forward without gradient; its recomputation, with gradient, adds the delta to the output, and the forward
    must compute what the recomputation computes (the merged sum rounds differently: in bf16 every adapted
    transformer's output differed between the two). The trainer's sampling steps run in inference mode and keep
    the merged product.

    One matrix of the layer's size (a few MB at most) made per call, against the two products over the
    activations and the full-size addition of :func:`add_lora_delta`: on a GPU the activations are read once
    instead of three times. The sum is rounded once to the weights' dtype, as ComfyUI rounds a LoRA merged into
    its weights."""
    if torch.is_grad_enabled() and (x.requires_grad or down.requires_grad or up.requires_grad):
        return None
    if trainable and not torch.is_inference_mode_enabled():
        return None
    weight = getattr(module, "weight", None)
    if type(weight) not in (torch.Tensor, torch.nn.Parameter) or not _plain_linear(module):
        return None
    if weight.dtype != x.dtype or weight.device != x.device:
        return None
    return torch.addmm(weight, up, down, alpha=scale)


class CastWeights:
    """Adapter weights cast to the device and dtype of the activations.

    Frozen weights are cast once per (device, dtype) and kept; trainable ones
    (requires_grad) are cast on every call so gradients reach the fp32 originals.
    """

    def __init__(self, down: torch.Tensor, up: torch.Tensor):
        self.down, self.up = down, up
        self._cache = {}

    @property
    def trainable(self) -> bool:
        return self.down.requires_grad or self.up.requires_grad

    def get(self, like: torch.Tensor):
        if self.trainable:
            return self.down.to(like.device, like.dtype), self.up.to(like.device, like.dtype)
        key = (like.device, like.dtype)
        pair = self._cache.get(key)
        if pair is None:
            pair = (self.down.to(like.device, like.dtype), self.up.to(like.device, like.dtype))
            self._cache = {key: pair}  # one entry: a model lives on one device at a time
        return pair
