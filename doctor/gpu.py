"""torch, the GPU it sees, and its memory against what training needs."""
from __future__ import annotations

import os
import shutil

from .result import fail, ok, warn

NAME = "torch / GPU"
GIB = 1024 ** 3
# Training at the default settings peaks at an estimated TRAIN_PEAK_GIB of GPU memory (bench/bench_train.py
# --estimate: 8.5 GiB for UNet, motion modules, VAE and the gradient step, 9.0 with the CLIP text encoder and the
# face encoder), so a 12 GB card fits it with room for its CUDA context and the desktop; README.md and
# docs/nodes.md state the same (tests/test_memory_figures.py).
TRAIN_PEAK_GIB = 9
TRAIN_SETTINGS = "16 frames of 512x512, training_cfg 1.5, rank 4, mixed precision, gradient checkpointing on"
TRAIN_TARGET_GIB = 12
TRAIN_CERTAIN_GIB = 16
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
        peak = f"Training peaks at about {TRAIN_PEAK_GIB} GiB ({TRAIN_SETTINGS})"
        if total < TRAIN_TARGET_GIB - 1.0:  # a card sold as 12 GB reports 11.2 GiB
            return warn(NAME, f"{head} {peak}: it needs a card of about {TRAIN_TARGET_GIB} GB.",
                        REDUCE[0].upper() + REDUCE[1:] + ".", **details)
        if free < TRAIN_PEAK_GIB + 0.5 and not ctx.in_server:
            return warn(NAME, f"{head} {peak}, and other programs hold {total - free:.1f} GiB of it.",
                        "Close other programs that use the GPU before training.", **details)
        if total < TRAIN_CERTAIN_GIB - 0.5:
            return ok(NAME, f"{head} {peak}: it fits; keep other programs off the GPU while training.", **details)
        return ok(NAME, f"{head} Enough for training ({peak}; with room to spare, gradient checkpointing "
                        "auto turns itself off and training runs faster).", **details)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return warn(NAME, f"torch {version} on an Apple GPU (MPS): PersonalVideo's training is not tested there.",
                    f"Training may be slow or fail on MPS; a CUDA GPU with {TRAIN_TARGET_GIB} GB or more is what "
                    "it is built for.",
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
