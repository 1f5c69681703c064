"""The trainer's device helpers: where a model runs, and the dtype it computes in."""
from __future__ import annotations

import torch


def device_of(obj, fallback=None) -> torch.device:
    """The device ``obj`` runs on: a ModelPatcher's load device, a base model's ``device``, a module's first
    parameter; else ``fallback``, else the device ComfyUI computes on (the CPU without ComfyUI)."""
    for found in (getattr(obj, "load_device", None), getattr(obj, "device", None)):
        if found is not None:
            return torch.device(found)
    parameters = getattr(obj, "parameters", None)
    if callable(parameters):
        try:
            return next(parameters()).device
        except StopIteration:
            pass
    if fallback is not None:
        return torch.device(fallback)
    try:
        import comfy.model_management
    except ImportError:
        return torch.device("cpu")
    return comfy.model_management.get_torch_device()


def compute_dtype_of(model):
    """The dtype a ComfyUI MODEL (or its base model) computes in: the dtype it casts its weights to where it has
    one (weights stored in another, such as fp8), else its weights' dtype; None for anything else."""
    base = getattr(model, "model", model)
    cast = getattr(base, "manual_cast_dtype", None)
    if cast is not None:
        return cast
    get_dtype = getattr(base, "get_dtype", None)
    return get_dtype() if callable(get_dtype) else None
