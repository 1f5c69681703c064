"""Mixed precision for the trainer's gradient passes, with fp32 trainable weights.

On a CUDA device the gradient passes (the last sampling step, the decode of the
trained frame, the textual-inversion forward) run under ``torch.autocast``:
bf16 where the device supports it, else fp16 with a gradient scaler (fp16
gradients underflow without one).  The trainable tensors (adapter weights, the
token vector) and the optimiser state stay fp32; autocast only lowers the
precision of the activations.  The identity loss (face encoder) runs in fp32
outside autocast.  On the CPU the default is plain fp32; bf16 can be asked for
(it is what the tests use to exercise this path).

Status: the CPU paths (fp32, bf16 autocast) are tested; the CUDA paths (bf16
autocast, fp16 with the gradient scaler) follow torch's documented AMP recipe
but have not yet been run on a GPU in this project's tests or benchmarks.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .errors import TrainingError

CHOICES = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    device_type: str
    name: str                          # "fp32", "bf16" or "fp16"
    scaler: object = None              # torch GradScaler for fp16 on CUDA

    @property
    def dtype(self):
        return _DTYPES.get(self.name, torch.float32)

    def autocast(self):
        """Context for a gradient pass at this precision (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def full(self):
        """Context that runs fp32 inside an autocast region (the identity loss)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, enabled=False)

    def backward_and_step(self, loss: torch.Tensor, optimizer) -> bool:
        """Backward, then an optimiser step; False when the scaler skipped the step (inf/NaN gradients)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return True
        self.scaler.scale(loss).backward()
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale


def _device_type(device) -> str:
    return torch.device(device).type if device is not None else "cpu"


def check_choice(choice: str) -> None:
    if choice not in CHOICES:
        raise TrainingError(f"precision must be one of {', '.join(CHOICES)} (got {choice!r}).")


def resolve(choice: str, device) -> Precision:
    """The precision to train with on ``device`` for a setting in :data:`CHOICES`."""
    check_choice(choice)
    kind = _device_type(device)
    if choice == "auto":
        if kind != "cuda":
            choice = "fp32"
        else:
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    scaler = None
    if choice == "fp16" and kind == "cuda":
        scaler = torch.amp.GradScaler("cuda")
    return Precision(kind, choice, scaler)
