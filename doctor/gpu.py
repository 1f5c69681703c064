"""torch, the GPU it sees, and its memory against what training needs."""
from __future__ import annotations

import os
import shutil

from .result import fail, ok, warn

NAME = "torch / GPU"
GIB = 1024 ** 3
# Training 16 frames at 512x512 (the paper's setting) is designed to fit 16 GB of GPU memory; 24 GB is certain.
TRAIN_TARGET_GIB = 16
TRAIN_CERTAIN_GIB = 24
CPU_TRAIN_RAM_GIB = 14  # peak resident memory of the main job's CPU training run (SD1.5 fp32, weights cloned)
REDUCE = ("train with fewer frames (8) or a smaller size (384x384), or use a GPU with "
          f"{TRAIN_TARGET_GIB} GB or more ({TRAIN_CERTAIN_GIB} GB for margin)")


def _nvidia_driver_present() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _comfy_device():
    """The device a running ComfyUI computes on (None outside a server or before model_management loads)."""
    import sys

    mm = sys.modules.get("comfy.model_management")
    try:
        return mm.get_torch_device() if mm else None
    except Exception:
        return None


def check_torch(ctx):
    try:
        import torch
    except Exception as exc:  # noqa: BLE001  (any import failure is the finding)
        return fail(NAME, f"torch does not import ({type(exc).__name__}: {exc}).",
                    "Reinstall torch for ComfyUI's Python (see pytorch.org for the build that fits your GPU).")
    version = torch.__version__
    details = {"torch": version, "cuda_build": torch.version.cuda, "hip_build": getattr(torch.version, "hip", None)}
    device = _comfy_device() if ctx.in_server else None
    if torch.cuda.is_available():
        if device is not None and device.type == "cpu":
            return warn(NAME, f"torch {version} sees a GPU, but this ComfyUI runs on the CPU (started with --cpu?).",
                        "Start ComfyUI without --cpu to train on the GPU.", **details)
        index = device.index if device is not None and device.type == "cuda" and device.index is not None \
            else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        free, total = (v / GIB for v in torch.cuda.mem_get_info(index))
        backend = f"ROCm {torch.version.hip}" if details["hip_build"] else f"CUDA {torch.version.cuda}"
        details.update(gpu=name, total_gib=round(total, 2), free_gib=round(free, 2))
        head = f"torch {version}, {backend}, {name}: {total:.1f} GiB, {free:.1f} GiB free now."
        if total < TRAIN_TARGET_GIB - 0.5:  # cards sold as 16 GB report a little less
            return warn(NAME, f"{head} Training 16 frames at 512x512 needs about {TRAIN_TARGET_GIB} GB.",
                        REDUCE[0].upper() + REDUCE[1:] + ".", **details)
        if free < TRAIN_TARGET_GIB - 0.5 and not ctx.in_server:
            return warn(NAME, f"{head} Other programs hold {total - free:.1f} GiB of it.",
                        "Close other programs that use the GPU before training.", **details)
        if total < TRAIN_CERTAIN_GIB - 0.5:
            return ok(NAME, f"{head} Training 16 frames at 512x512 is designed to fit {TRAIN_TARGET_GIB} GB; "
                            "keep other programs off the GPU while training.", **details)
        return ok(NAME, f"{head} Enough for training 16 frames at 512x512.", **details)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return warn(NAME, f"torch {version} on an Apple GPU (MPS): PersonalVideo's training is not tested there.",
                    "Training may be slow or fail on MPS; a CUDA GPU with 16 GB or more is what it is built for.",
                    **details)
    if _nvidia_driver_present() and not torch.version.cuda and not details["hip_build"]:
        return warn(NAME, f"torch {version} is a CPU-only build, but this machine has an NVIDIA driver.",
                    "Install the CUDA build of torch for ComfyUI's Python (pytorch.org shows the command).",
                    **details)
    if _nvidia_driver_present():
        return warn(NAME, f"torch {version} (CUDA {torch.version.cuda}) cannot use the NVIDIA GPU here "
                          "(torch.cuda.is_available() is False).",
                    "Update the NVIDIA driver to one that supports this CUDA version, or install a torch built "
                    "for an older CUDA.", **details)
    ram = _system_memory_gib()
    details.update(ram_gib=ram)
    low = (f" This machine has {ram:.0f} GiB of memory; training on the CPU holds an SD1.5 model twice in fp32 "
           f"(about {CPU_TRAIN_RAM_GIB} GiB at the peak)." if ram is not None and ram < CPU_TRAIN_RAM_GIB else "")
    return warn(NAME, f"torch {version}, no GPU: ComfyUI computes on the CPU. Training 16 frames at 512x512 "
                      f"would take days there; only reduced runs (like the main job's) are practical.{low}",
                f"Train on a machine with an NVIDIA GPU of {TRAIN_TARGET_GIB} GB or more.", **details)


def _system_memory_gib():
    try:
        import psutil

        return round(psutil.virtual_memory().total / GIB, 1)
    except Exception:  # noqa: BLE001
        return None
