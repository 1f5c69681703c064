"""Mixed precision for the trainer's gradient passes, with fp32 trainable weights.

``auto`` trains in the precision the models already compute in. ComfyUI loads SD1.5 and Wan in fp16 or bf16 on
a GPU, and runs them in that dtype without autocast when it samples. With ``auto`` the gradient passes (the
last sampling step, the decode of the trained frame, the textual-inversion forward) run the same way: each
model in its own dtype, no autocast, so training computes exactly what generation computes. Autocast to
another dtype would cast every weight at every layer of every pass (autocast keeps no cast copy of weights
that need no gradient) and move activations back and forth around the layers it runs in fp32. Where that dtype
is fp16 on CUDA, a gradient scaler keeps the gradients from underflowing; the adapter's LoRA weights cast themselves to
the activations' dtype, with gradient.

Where the model computes in fp32 (ComfyUI's ``--fp32-unet``, or a GPU without fast half precision), ``auto``
on a CUDA device uses ``torch.autocast``: bf16 where the device supports it, else fp16 with a gradient scaler.
On the CPU, ``auto`` with an fp32 model is plain fp32.

``fp32`` turns autocast off (the models still compute in their own dtype), ``bf16`` and ``fp16`` force autocast
to that dtype. The trainable tensors (adapter weights, the token vector) and the optimiser state stay fp32
whatever the choice. The identity loss (face encoder) runs in fp32 outside autocast.

Status: the CPU paths (fp32, a bf16 model trained in its own dtype, bf16 autocast) are tested; the CUDA paths
(fp16 with the gradient scaler) follow torch's documented AMP recipe but have not yet been run on a GPU in
this project's tests or benchmarks.
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
    name: str                          # "fp32", "bf16" or "fp16": what the gradient passes compute in
    scaler: object = None              # torch GradScaler for fp16 on CUDA
    native: bool = False               # the models' own dtype, no autocast (auto on a half-precision model)

    @property
    def dtype(self):
        return _DTYPES.get(self.name, torch.float32)

    def autocast(self):
        """Context for a gradient pass at this precision (a no-op for fp32 and for the models' own dtype)."""
        if self.name == "fp32" or self.native:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def full(self):
        """Context that runs fp32 inside an autocast region (the identity loss)."""
        if self.name == "fp32" or self.native:
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

    def scaler_state(self) -> dict:
        """The gradient scaler's state (its scale and growth count, plain numbers) for a resumable checkpoint;
        empty without a scaler."""
        return dict(self.scaler.state_dict()) if self.scaler is not None else {}

    def restore_scaler(self, state) -> None:
        """The scaler continues from ``state`` (:meth:`scaler_state` of the interrupted run), so a resumed fp16
        run skips the steps the uninterrupted one skips; nothing without a scaler or a state."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))


def _device_type(device) -> str:
    return torch.device(device).type if device is not None else "cpu"


def check_choice(choice: str) -> None:
    if choice not in CHOICES:
        raise TrainingError(f"precision must be one of {', '.join(CHOICES)} (got {choice!r}).")


def resolve(choice: str, device, model_dtype=None) -> Precision:
    """The precision to train with on ``device`` for a setting in :data:`CHOICES`; ``model_dtype`` is the dtype
    the diffusion model computes in (:func:`.devices.compute_dtype_of`; None: not known, as fp32)."""
    check_choice(choice)
    kind = _device_type(device)
    native = False
    if choice == "auto":
        if model_dtype in (torch.float16, torch.bfloat16):
            choice, native = ("fp16" if model_dtype == torch.float16 else "bf16"), True
        elif kind != "cuda":
            choice = "fp32"
        else:
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    scaler = None
    if choice == "fp16" and kind == "cuda":
        scaler = torch.amp.GradScaler("cuda")
    return Precision(kind, choice, scaler, native)
