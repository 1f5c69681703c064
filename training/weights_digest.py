"""Cheap digests of model weights, noise schedules and patches: the parts of a base model's fingerprint.

A tensor is digested from its shape and up to :data:`SAMPLES` evenly spaced values
(read as float32: the same values held in fp16 or fp32 give the same digest), so a
multi-GB model is fingerprinted by copying a few MB.  A set of tensors is digested
without their names (the sorted digests of its tensors), so the same weights give
the same digest whether ComfyUI holds them in its ldm layout or diffusers in its own
(the Train node and the engine record the same model alike).  A noise schedule is
digested whole (its 1000 noise levels) with the kind of prediction the model makes.

Pure torch: used by :mod:`.base_model` for ComfyUI's MODEL and by the engine.
"""
from __future__ import annotations

import hashlib

import torch

SAMPLES = 64
FORMAT = 2        # recorded with a fingerprint; 1: the first form (names, dtypes, patches without their weights)
NONE = "none"


def sample(t: torch.Tensor) -> torch.Tensor:
    """Up to SAMPLES evenly spaced values of ``t`` (flattened), as float32 on the CPU."""
    flat = t.detach().reshape(-1)
    step = max(1, flat.numel() // SAMPLES)
    return flat[::step][:SAMPLES].float().cpu()


def tensor_digest(t: torch.Tensor) -> bytes:
    """sha256 of the shape and the sampled values of ``t``."""
    digest = hashlib.sha256(repr(tuple(t.shape)).encode())
    digest.update(sample(t).numpy().tobytes())
    return digest.digest()


def tensors_digest(tensors) -> tuple:
    """(hex digest, number of values) of a collection of tensors, whatever their names and order."""
    digests, count = [], 0
    with torch.no_grad():
        for t in tensors:
            digests.append(tensor_digest(t))
            count += t.numel()
    whole = hashlib.sha256()
    for d in sorted(digests):
        whole.update(d)
    return whole.hexdigest()[:32], count


def value_digest(value, digest) -> None:
    """Feed ``value`` (tensors, numbers, text, and tuples, lists, dicts or objects holding ``weights`` of them)
    into ``digest``; tensors by :func:`tensor_digest`."""
    if torch.is_tensor(value):
        digest.update(b"T" + tensor_digest(value))
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}".encode())
        for v in value:
            value_digest(v, digest)
        digest.update(b"]")
    elif isinstance(value, dict):
        digest.update(f"{{{len(value)}".encode())
        for k in sorted(value, key=str):
            digest.update(str(k).encode())
            value_digest(value[k], digest)
        digest.update(b"}")
    elif value is None or isinstance(value, (bool, int, float, str)):
        digest.update(repr(value).encode())
    elif hasattr(value, "weights"):            # a weight adapter object holding the patch's tensors
        digest.update(type(value).__name__.encode())
        value_digest(getattr(value, "weights"), digest)
    else:                                      # a function or other object: its kind only
        digest.update(getattr(value, "__qualname__", type(value).__name__).encode())


def schedule_digest(prediction: str, sigmas: torch.Tensor) -> str:
    """Digest of a noise schedule: the prediction kind ("eps", "v_prediction", ...) and every noise level."""
    digest = hashlib.sha256(prediction.encode())
    digest.update(sigmas.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def motion_digest(models) -> str:
    """Digest of motion models, each given as (name -> tensor of its state dict, digest of its patches):
    their weights without the positional-encoding tables (``*.pe``, computed, not loaded), and their patches."""
    if not models:
        return NONE
    digest = hashlib.sha256()
    for state, patches in models:
        weights, _ = tensors_digest(t for name, t in state.items() if not name.endswith(".pe"))
        digest.update(f"{weights}:{patches}".encode())
    return digest.hexdigest()[:16]


def fingerprint(model_class: str, weights, patches: str = NONE, motion: str = NONE, sampling: str = NONE) -> dict:
    """A base model's fingerprint from its UNet ``weights`` (tensors) and the digests of the rest."""
    digest, count = tensors_digest(weights)
    return {"format": FORMAT, "class": model_class, "parameters": count, "weights": digest, "patches": patches,
            "motion": motion, "sampling": sampling}
