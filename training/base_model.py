"""The MODEL the trainer is given: the one SD1.5 check, and a fingerprint of its weights.

The fingerprint says whether two runs trained on the same base model: ComfyUI's
MODEL does not carry the checkpoint's file name, so the weights themselves are
sampled (up to :data:`SAMPLES` evenly spaced values of every UNet tensor, hashed
with the tensor names and shapes; the checkpoint's own values where ComfyUI has
LoRA patches written into a loaded model), together with the LoRA patches on it
(keys and strengths). Reading the samples copies a few MB at most; no weight is
changed.
"""
from __future__ import annotations

import hashlib

import torch

from .errors import TrainingError

SAMPLES = 64


def check_sd15(model, what: str):
    """The targets of an SD1.5-family MODEL (``discover_targets``), or a TrainingError naming the input."""
    import comfy.supported_models

    from ..sia import discover_targets

    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if diffusion_model is None:
        raise TrainingError(f"the {what} input is not a diffusion MODEL; connect an SD1.5 MODEL.")
    config = getattr(model.model, "model_config", None)
    if config is not None and not isinstance(config, comfy.supported_models.SD15):
        raise TrainingError(f"the {what} input is not an SD1.5-family model (it is {type(config).__name__}). "
                            "PersonalVideo trains on SD1.5 / AnimateDiff models only: load an SD1.5 checkpoint.")
    found = discover_targets(diffusion_model)
    if not found.targets:
        raise TrainingError(f"the {what} input is not an SD1.5-family model ({found.summary()}). PersonalVideo "
                            "trains on SD1.5 / AnimateDiff models only: load an SD1.5 checkpoint.")
    return found


def _sample(t: torch.Tensor) -> bytes:
    flat = t.detach().reshape(-1)
    step = max(1, flat.numel() // SAMPLES)
    return flat[::step][:SAMPLES].float().cpu().numpy().tobytes()


def _unpatched(model, name: str, t: torch.Tensor) -> torch.Tensor:
    """The checkpoint's own weight: while ComfyUI has a MODEL loaded, LoRA patches are written into its
    weights in place and the originals kept in ``backup`` (a tensor, or a tuple whose ``weight`` is one)."""
    kept = (getattr(model, "backup", None) or {}).get("diffusion_model." + name)
    if kept is None:
        return t
    return getattr(kept, "weight", kept)


def fingerprint(model) -> dict:
    """``{"class", "parameters", "weights", "patches"}`` of a MODEL: the same for the same checkpoint and LoRAs,
    whether ComfyUI has it loaded (patches applied) or not."""
    diffusion_model = model.model.diffusion_model
    weights, count = hashlib.sha256(), 0
    with torch.no_grad():
        for name, t in sorted(diffusion_model.state_dict(keep_vars=True).items()):
            t = _unpatched(model, name, t)
            count += t.numel()
            weights.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            weights.update(_sample(t))
    patches = hashlib.sha256()
    for key in sorted(getattr(model, "patches", {}) or {}):
        patches.update(key.encode())
        for entry in model.patches[key]:
            patches.update(repr((entry[0], entry[2] if len(entry) > 2 else None)).encode())
    config = getattr(model.model, "model_config", None)
    return {"class": type(config).__name__, "parameters": count, "weights": weights.hexdigest()[:32],
            "patches": patches.hexdigest()[:16] if getattr(model, "patches", None) else "none"}
