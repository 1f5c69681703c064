"""Backward through ComfyUI's models inside a node, without copying them or touching them.

Every node runs under ``torch.inference_mode()``: the weights of models loaded
there are *inference tensors*, which autograd refuses to save for backward.
Inside :func:`gradient_window`, every torch operation that runs with gradient
on is handed, in place of each inference tensor among its arguments, a normal
tensor over the very same memory (a zero-copy alias, ``Tensor.set_`` on the
same storage).  The models themselves are never changed: no parameter or
buffer is swapped, so there is nothing to put back, and whatever ComfyUI's
memory manager does with a model (loading, offloading, casting weights layer
by layer in low-VRAM mode, patching) is never undone behind its back.  The
aliases are made as operations run, so they always read the weights the
module holds at that moment; there is no copy of any weight, and incoming
tensors made under inference mode (conditionings, images, embeddings) are
covered the same way.

Only reading goes through an alias: an in-place operation on an inference
tensor keeps it (and fails as torch makes it fail), so nothing can write
into a user's weights through the window.

The window also works around in-place residual adds that break backward:
- 2024 ComfyUI ``BasicTransformerBlock`` does ``x += attn(norm(x))``: a
  forward-pre-hook on ``norm1/norm2/norm3`` hands the norm a clone of ``x``;
- ``CLIPLayer`` (both hosts) does the same around ``layer_norm1/layer_norm2``.
The hooks only add a copy of an activation; values are unchanged; they are
removed when the window ends.

Recomputation under gradient checkpointing runs during backward, where torch
gives no mode to the operations; :mod:`.checkpointing` enters the aliasing
again for it (:func:`active` tells whether a window is open, :func:`aliasing`
is the mode to enter).
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

_NORMS = {"BasicTransformerBlock": ("norm1", "norm2", "norm3"), "CLIPLayer": ("layer_norm1", "layer_norm2")}
_depth = [0]   # windows open now (on this thread of control)


def _clone_input(module, args):
    if args and torch.is_tensor(args[0]):
        return (args[0].clone(),) + tuple(args[1:])
    return None


def normal_tensors():
    """The pack's one way out of ComfyUI's inference mode: within the block, new tensors are normal tensors
    (autograd can record them, optimisers can update them in place) even inside a node. Every place that
    makes trainable or trained tensors, or copies tensors made in inference mode, goes through here."""
    return torch.inference_mode(False)


def normal_alias(t: torch.Tensor) -> torch.Tensor:
    """A normal (non-inference) tensor over the same memory as ``t``: no copy."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter):   # tensor subclasses (quantised weights): a copy
        with normal_tensors():
            return t.detach().clone()
    alias = torch.empty((0,), dtype=t.dtype, device=t.device)   # callers run outside inference mode
    alias.set_(t.untyped_storage(), t.storage_offset(), t.size(), t.stride())
    alias._pv_weight_alias = True   # for memory accounting: this is a weight's (or an input's) own memory
    return alias


def _aliased(value):
    if isinstance(value, torch.Tensor):
        return normal_alias(value) if value.is_inference() else value
    if isinstance(value, (list, tuple)) and value:
        items = [_aliased(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict) and value:
        return {k: _aliased(v) for k, v in value.items()}
    return value


def _writes_first_argument(func) -> bool:
    name = getattr(func, "__name__", "")
    return name.endswith("_") and not name.endswith("__") or name in ("__setitem__",) or \
        (name.startswith("__i") and name.endswith("__"))


class _AliasInferenceArguments(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            if _writes_first_argument(func) and args:
                args = (args[0],) + tuple(_aliased(list(args[1:])))
            else:
                args = _aliased(args)
            kwargs = _aliased(kwargs)
        return func(*args, **kwargs)


def active() -> bool:
    """Whether a gradient window is open."""
    return _depth[0] > 0


@contextlib.contextmanager
def aliasing():
    """Inference tensors given to torch operations are replaced by aliases (inside a window's recomputation)."""
    _depth[0] += 1
    try:
        with _AliasInferenceArguments():
            yield
    finally:
        _depth[0] -= 1


@contextlib.contextmanager
def gradient_window(*roots: torch.nn.Module):
    """Inside the block, backward works through ``roots`` (and any other model); afterwards nothing remains."""
    handles, seen = [], set()
    try:
        with normal_tensors():
            for root in roots:
                if root is None:
                    continue
                for m in root.modules():
                    if id(m) in seen:
                        continue
                    seen.add(id(m))
                    for norm_name in _NORMS.get(type(m).__name__, ()):
                        norm = getattr(m, norm_name, None)
                        if isinstance(norm, torch.nn.Module):
                            handles.append(norm.register_forward_pre_hook(_clone_input))
            with aliasing():
                yield
    finally:
        for h in handles:
            h.remove()


def normal_copy(t: torch.Tensor) -> torch.Tensor:
    """A non-inference copy of a tensor, no grad."""
    with normal_tensors():
        return t.detach().clone()
