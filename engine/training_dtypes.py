"""The dtypes the engine's SD1.5 models train in, by device and precision setting: those the Train node's models
train in inside ComfyUI.

On a GPU ComfyUI loads SD1.5's UNet in fp16, and its VAE in bf16 where the GPU computes bf16 (fp32 elsewhere);
with precision ``auto`` the node trains them in those dtypes, without autocast (:mod:`..training.precision`).
The engine does the same on CUDA with ``auto``: the UNet and the motion modules in fp16 (a gradient scaler
keeps the gradients from underflowing), the VAE in bf16 or fp32. The text encoder stays fp32: it is small and
the token's gradient runs through it. The LoRA weights and the token vector are fp32 whatever the dtypes.

An explicit ``fp32``, ``bf16`` or ``fp16`` keeps every weight in fp32: ``fp32`` computes in fp32, the other two
autocast over the fp32 weights. On the CPU everything is fp32.
"""
from __future__ import annotations

import torch

from ..training.precision import check_choice


def _auto_on_cuda(choice: str, device) -> bool:
    check_choice(choice)
    return choice == "auto" and torch.device(device).type == "cuda"


def unet_dtype(choice: str, device) -> torch.dtype:
    """The UNet's and the motion modules' dtype."""
    return torch.float16 if _auto_on_cuda(choice, device) else torch.float32


def vae_dtype(choice: str, device, bf16_supported: bool | None = None) -> torch.dtype:
    """The VAE's dtype; ``bf16_supported``: whether the device computes bf16 (None: ask CUDA)."""
    if not _auto_on_cuda(choice, device):
        return torch.float32
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float32


def place(models, motion_adapter, device, choice: str) -> None:
    """``models`` (:class:`.models.EngineModels`) and ``motion_adapter`` (None: none) on ``device`` in the dtypes
    they train in for the precision setting ``choice``."""
    device = torch.device(device)
    models.unet.to(device=device, dtype=unet_dtype(choice, device))
    models.vae.to(device=device, dtype=vae_dtype(choice, device))
    models.text_encoder.to(device=device, dtype=torch.float32)
    if motion_adapter is not None:
        motion_adapter.to(device=device, dtype=unet_dtype(choice, device))


def compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype ``model`` computes in: that of its weights other than the LoRA's (fp32 after
    :func:`.adapter_step.start`)."""
    for name, p in model.named_parameters():
        if ".lora_" not in name:
            return p.dtype
    return torch.float32
