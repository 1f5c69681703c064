"""A distillation LoRA (lightx2v, CausVid, ...) on the MODEL for the training samples only.

Stage 2 trains the adapter on videos the MODEL generates in a few steps. A speed LoRA makes those few
steps give a finished video, as it does when people generate with one. It is put on a clone of the MODEL
(core's ``load_lora_for_models``, model side only): the user's MODEL keeps its patches, and the adapter
trained on the clone holds only its own q/k/v tensors, never the LoRA's weights.
"""
from __future__ import annotations

from .errors import TrainingError


def _patch_count(patcher) -> int:
    return sum(len(v) for v in (getattr(patcher, "patches", None) or {}).values())


def with_sampling_lora(model, path: str, strength: float = 1.0):
    """A clone of ``model`` with the LoRA file at ``path`` at ``strength``; TrainingError when the file is not
    readable or fits no layer of the MODEL. The file is read as safetensors (never unpickled)."""
    import os

    import comfy.sd
    import comfy.utils

    name = os.path.basename(path)
    if not name.endswith(".safetensors"):
        raise TrainingError(f"sampling_lora {name} is not a .safetensors file: convert it, or pick one in "
                            "models/loras that is.")
    try:
        lora = comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as exc:
        raise TrainingError(f"sampling_lora {name} cannot be read ({type(exc).__name__}: {exc}): download it "
                            "again, or set sampling_lora to none.") from None
    patched, _ = comfy.sd.load_lora_for_models(model, None, lora, float(strength), 0.0)
    if _patch_count(patched) == _patch_count(model):
        raise TrainingError(f"sampling_lora {name} fits no layer of this MODEL (a LoRA for another model?): pick "
                            "a distillation LoRA made for this Wan model (e.g. lightx2v for Wan 2.1 T2V 1.3B "
                            "or 14B, by size), or set sampling_lora to none.")
    return patched
