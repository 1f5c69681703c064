"""The trainer's one device helper: where a model runs."""
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
