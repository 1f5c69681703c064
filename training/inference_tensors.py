"""Making ComfyUI's models usable for backward inside a node, and putting them back exactly.

Every node runs under ``torch.inference_mode()``: the weights of models loaded
there are *inference tensors*, which autograd refuses to save for backward.
:func:`trainable_view` swaps every such parameter/buffer of the given modules
for a normal tensor with the same values (``Parameter(p.clone(),
requires_grad=False)``; ``.to()`` or ``p.data = ...`` would not do), and puts
the very original objects back when the block ends, whatever happens.

It also works around in-place residual adds that break backward:
- 2024 ComfyUI ``BasicTransformerBlock`` does ``x += attn(norm(x))``: a
  forward-pre-hook on ``norm1/norm2/norm3`` hands the norm a clone of ``x``;
- ``CLIPLayer`` (both hosts) does the same around ``layer_norm1/layer_norm2``.
The hooks only add a copy; values are unchanged.
"""
from __future__ import annotations

import contextlib

import torch

_NORMS = {"BasicTransformerBlock": ("norm1", "norm2", "norm3"), "CLIPLayer": ("layer_norm1", "layer_norm2")}


def _clone_input(module, args):
    if args and torch.is_tensor(args[0]):
        return (args[0].clone(),) + tuple(args[1:])
    return None


def _swap(module: torch.nn.Module, store: str, swapped: list) -> None:
    table = getattr(module, store)
    for name, t in list(table.items()):
        if t is None or not t.is_inference():
            continue
        new = t.detach().clone()
        table[name] = torch.nn.Parameter(new, requires_grad=False) if store == "_parameters" else new
        swapped.append((table, name, t))


@contextlib.contextmanager
def trainable_view(*modules: torch.nn.Module):
    """Inside the block the modules hold normal (non-inference) tensors; afterwards exactly the originals."""
    swapped, handles, seen = [], [], set()
    try:
        with torch.inference_mode(False):
            for root in modules:
                if root is None:
                    continue
                for m in root.modules():
                    if id(m) in seen:
                        continue
                    seen.add(id(m))
                    _swap(m, "_parameters", swapped)
                    _swap(m, "_buffers", swapped)
                    for norm_name in _NORMS.get(type(m).__name__, ()):
                        norm = getattr(m, norm_name, None)
                        if isinstance(norm, torch.nn.Module):
                            handles.append(norm.register_forward_pre_hook(_clone_input))
        yield len(swapped)
    finally:
        for h in handles:
            h.remove()
        for table, name, original in reversed(swapped):
            table[name] = original


def normal_copy(t: torch.Tensor) -> torch.Tensor:
    """A non-inference copy of a tensor, no grad."""
    with torch.inference_mode(False):
        return t.detach().clone()

