"""Whether the trainer's gradient passes run under gradient checkpointing, and for which layers: ``auto``, ``on``
or ``off``.

Checkpointing (:mod:`.checkpointing`) keeps only the inputs of each layer for backward and recomputes the
rest there: far less memory (at 16 x 512 x 512 an estimated 8.2 GiB against 45.5 GiB for stage 2) for one more
forward pass of time. ``on`` and ``off`` force it for every layer. ``auto`` (the default) decides from the free
memory:

- on a CUDA device the first gradient pass of a stage runs checkpointed and is measured through the
  allocator: its peak, and the bytes each layer's recomputation holds in backward (what that layer would
  keep from the forward to backward without checkpointing). The peak of a pass without checkpointing is
  predicted as that peak plus those bytes of every layer but the largest (the largest is in the peak
  already). When the predicted growth over what is allocated between passes is at most :data:`HEADROOM`
  (0.85) of the memory free between passes (the device's free memory plus what torch's allocator holds
  unused), the following passes run without checkpointing;
- otherwise, as many layers as fit in :data:`PARTIAL_HEADROOM` (0.70) of it run without it, smallest first,
  and the rest stay checkpointed (**partial**): a layer left out is not recomputed, and what it keeps is
  added to the measured peak. A partial pass fills its room by design, where a pass without checkpointing
  that fits mostly leaves some, so it keeps a wider margin for what the readings leave out (the caching
  allocator's rounding and fragmentation, some 10-20 %). Smallest first spares the most layers
  for the room (a layer's recomputation takes time roughly in proportion to what it keeps). On a 16-24 GB
  card this takes part of the recomputation away where all or nothing kept all of it. When no layer fits,
  every layer stays checkpointed. The decision is made once per stage and logged;
- on the CPU (and any device whose free memory cannot be read) it stays on: the memory is the machine's,
  shared with everything else, and the recomputation costs less there than running out of it.

What is read from the allocator goes through :class:`CudaAllocator`; the tests put a double in its place
(:data:`allocator_for`), since they have no CUDA device.
"""
from __future__ import annotations

import contextlib
import logging
import weakref

import torch

from .errors import TrainingError

log = logging.getLogger("PersonalVideo")

CHOICES = ("auto", "on", "off")
HEADROOM = 0.85   # share of the free memory a pass without checkpointing may take
PARTIAL_HEADROOM = 0.70   # share a partial pass may take: it fills up to it by design, so more margin is kept


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
    """The choice for one stage: :attr:`enabled` and :attr:`spared` for the next pass, :meth:`measured` around
    each pass."""

    def __init__(self, setting, device, stage: str = "training"):
        self.setting = normalise(setting)
        self.stage = stage
        self.allocator = allocator_for(device) if self.setting == "auto" else None
        self.enabled = self.setting != "off"
        self.spared = weakref.WeakSet()   # layers that run without checkpointing while it is enabled (partial)
        self.decided = self.setting != "auto" or self.allocator is None
        self.prediction = None   # (predicted growth of the chosen pass, free memory) once decided by auto

    @property
    def mode(self) -> str:
        """``on``, ``off`` or ``partial``: what the next passes run with."""
        return "partial" if self.enabled and len(self.spared) else ("on" if self.enabled else "off")

    def checkpointed(self, regions):
        """:func:`.checkpointing.checkpointed` of ``regions`` as chosen: every one, none, or all but the spared."""
        from .checkpointing import checkpointed

        return checkpointed(regions, self.enabled, tuple(self.spared))

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
        """From a checkpointed pass (``layers``: ``(layer, bytes)`` per recomputation): off when a pass without
        checkpointing takes at most HEADROOM of ``free``; otherwise the smallest layers that fit in
        PARTIAL_HEADROOM of it run without it (partial), or none (on)."""
        held = {}
        for layer, size in layers:
            held[layer] = held.get(layer, 0) + max(0, int(size))
        sizes = list(held.values())
        measured = peak - before
        grown = measured + sum(sizes) - max(sizes, default=0)
        self.spared = weakref.WeakSet()
        if grown <= HEADROOM * free:
            self.enabled = False
        else:
            self.enabled = True
            for layer, size in sorted(held.items(), key=lambda item: item[1]):
                if measured + size > PARTIAL_HEADROOM * free:
                    break
                measured += size
                self.spared.add(layer)
            if len(self.spared):
                grown = measured   # the partial pass: the checkpointed one's growth and what the spared keep
        self.prediction = (grown, free)
        self.decided = True
        gib = 1024 ** 3
        how = {"off": "a pass without it would take about",
               "on": "a pass without it would take about",
               "partial": f"{len(self.spared)} of {len(held)} layers run without it, the smallest; a pass would take "
                          "about"}[self.mode]
        limit = PARTIAL_HEADROOM if self.mode == "partial" else HEADROOM
        log.info("[PersonalVideo] %s: gradient checkpointing %s (auto: %s %.2f GiB more, %.2f GiB free; the limit is "
                 "%.0f%% of it)", self.stage, self.mode, how, grown / gib, free / gib, limit * 100)


def engine_checkpointing(setting, device) -> bool:
    """The engine's choice (diffusers' gradient checkpointing, switched per model): ``on``/``off`` as set;
    ``auto`` on a CUDA device, off elsewhere (the engine does not measure its passes; on the CPU its
    recomputation costs more than the memory it saves)."""
    setting = normalise(setting)
    if setting != "auto":
        return setting == "on"
    return torch.device(device).type == "cuda"
