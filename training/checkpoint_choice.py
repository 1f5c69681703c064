"""Whether the trainer's gradient passes run under gradient checkpointing: ``auto``, ``on`` or ``off``.

Checkpointing (:mod:`.checkpointing`) keeps only the inputs of each layer for backward and recomputes the
rest there: far less memory (at 16 x 512 x 512 an estimated 8.5 GiB against 38.9 GiB for stage 2) for one more
forward pass of time. ``on`` and ``off`` force it. ``auto`` (the default) decides from the free memory:

- on a CUDA device the first gradient pass of a stage runs checkpointed and is measured through the
  allocator: its peak, and the bytes each layer's recomputation holds in backward (what that layer would
  keep from the forward to backward without checkpointing). The peak of a pass without checkpointing is
  predicted as that peak plus those bytes of every layer but the largest (the largest is in the peak
  already); when the predicted growth over what is allocated between passes exceeds
  :data:`HEADROOM` (0.85) of the memory free between passes (the device's free memory plus what torch's
  allocator holds unused), checkpointing stays on, otherwise the following passes run without it. The
  decision is made once per stage and logged;
- on the CPU (and any device whose free memory cannot be read) it stays on: the memory is the machine's,
  shared with everything else, and the recomputation costs less there than running out of it.

What is read from the allocator goes through :class:`CudaAllocator`; the tests put a double in its place
(:data:`allocator_for`), since they have no CUDA device.
"""
from __future__ import annotations

import contextlib
import logging

import torch

from .errors import TrainingError

log = logging.getLogger("PersonalVideo")

CHOICES = ("auto", "on", "off")
HEADROOM = 0.85   # share of the free memory a pass without checkpointing may take


def normalise(setting) -> str:
    """``auto``/``on``/``off`` from a setting (True/False are ``on``/``off``, as older callers pass)."""
    if setting is True:
        return "on"
    if setting is False:
        return "off"
    if isinstance(setting, str) and setting in CHOICES:
        return setting
    raise TrainingError(f"gradient_checkpointing must be one of {', '.join(CHOICES)} (got {setting!r}): auto "
                        "decides from the free memory, on saves memory, off saves time.")


class CudaAllocator:
    """The readings the choice needs, from torch's CUDA caching allocator on ``device``."""

    def __init__(self, device):
        self.device = torch.device(device)

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device)

    def free(self) -> int:
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(free) + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)


def _default_allocator(device):
    device = torch.device(device) if device is not None else torch.device("cpu")
    return CudaAllocator(device) if device.type == "cuda" and torch.cuda.is_available() else None


allocator_for = _default_allocator   # device -> allocator or None (the tests' double goes here)


class CheckpointChoice:
    """The choice for one stage: :attr:`enabled` for the next pass, :meth:`measured` around each pass."""

    def __init__(self, setting, device, stage: str = "training"):
        self.setting = normalise(setting)
        self.stage = stage
        self.allocator = allocator_for(device) if self.setting == "auto" else None
        self.enabled = self.setting != "off"
        self.decided = self.setting != "auto" or self.allocator is None
        self.prediction = None   # (predicted growth without checkpointing, free memory) once decided by auto

    @contextlib.contextmanager
    def measured(self):
        """Around one gradient pass (forward and backward): the first pass of ``auto`` is measured and decides."""
        if self.decided:
            yield
            return
        from . import checkpointing

        allocator = self.allocator
        before = allocator.allocated()
        allocator.reset_peak()
        with checkpointing.measuring(allocator.allocated) as layers:
            yield
        self.decide(before, allocator.peak(), layers, allocator.free())

    def decide(self, before: int, peak: int, layers: list, free: int) -> None:
        """Checkpointing stays on when a pass without it would take more than HEADROOM of ``free``."""
        grown = peak - before + sum(layers) - max(layers, default=0)
        self.prediction = (grown, free)
        self.enabled = grown > HEADROOM * free
        self.decided = True
        gib = 1024 ** 3
        log.info("[PersonalVideo] %s: gradient checkpointing %s (auto: a pass without it would take about %.2f GiB, "
                 "%.2f GiB free; the limit is %.0f%% of it)", self.stage, "on" if self.enabled else "off",
                 grown / gib, free / gib, HEADROOM * 100)


def engine_checkpointing(setting, device) -> bool:
    """The engine's choice (diffusers' gradient checkpointing, switched per model): ``on``/``off`` as set;
    ``auto`` on a CUDA device, off elsewhere (the engine does not measure its passes; on the CPU its
    recomputation costs more than the memory it saves)."""
    setting = normalise(setting)
    if setting != "auto":
        return setting == "on"
    return torch.device(device).type == "cuda"
