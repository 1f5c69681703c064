"""The late-step gate: which steps of a run the adapter acts on.

The rule, one for every workflow shape: step i of the schedule a sampler runs
(from sigma_i to sigma_i+1) is adapted when its position lies in
[start_percent, end_percent] (within 0.001), where

- the position of a step is where its starting noise level sigma_i lies in the
  model's own noise schedule, 0.0 at the highest noise and 1.0 at the lowest
  (:mod:`.noise_position`; the scale of ComfyUI's ``percent_to_sigma``);
- the step that finishes the denoising (its schedule ends at zero noise) is at 1.0,
  unless that zero was put in place of a mid-schedule sigma: a KSamplerAdvanced
  pass stopped early without leftover noise (``return_with_leftover_noise =
  disable``, the default) jumps to zero noise from a step the unsplit run does
  not end with, so that step keeps its own position
  (:func:`.sampler_frames.stopped_early`).

So the decision for a step depends only on its own noise level, never on how
many steps the sampler was handed: a run split into passes over one schedule
(KSamplerAdvanced start/end steps, with or without leftover noise, SplitSigmas,
SplitSigmasDenoise) adapts exactly the steps the unsplit run adapts, and a low-denoise pass (denoise < 1,
vid2vid, a refine or upscale pass) or any custom SIGMAS is adapted where its
noise levels fall in the window.

Every model call is gated as the step it belongs to (:mod:`.sampler_frames`):
all the calls of one step (a second-order sampler's corrector and midpoint
calls, calls at a churned sigma, ancestral steps) are on together or off
together.  Samplers without a step loop (uni_pc, dpm_fast, dpm_adaptive) have
each call placed by its noise level: a call at or below schedule point
sigma_j and above sigma_j+1 belongs to step j.

Gradient checkpointing recomputes a region of the model during backward, after
the model call returned and, on CUDA, on autograd's own thread, where no
sampler frame can be found. So each checkpointed region records the on/off
state of every gate when its forward ends (:func:`states`) and its
recomputation runs with those states pinned (:func:`replayed`): the adapter
acts in backward exactly as it acted in the forward, whatever the thread and
however many model calls the step made.

If a run reaches the model without any schedule to be found (a sampling loop
that is not ComfyUI's and keeps no ``sigmas``), the adapter stays off for that
run unless the window is every step, and a warning says so once.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import weakref

import torch

from .noise_position import lowest_sigma, noise_positions
from .sampler_frames import sampler_place, stopped_early

log = logging.getLogger("PersonalVideo")

TOLERANCE = 1e-3      # positions this close to start/end count as inside the window
_RTOL = 1e-4          # a call's sigma this close to a schedule point is at that point


def ends_denoising(schedule: torch.Tensor, model_sampling) -> bool:
    """Whether the schedule's last step denoises fully (to 0, or below the model's lowest noise level:
    uni_pc replaces the final 0 by 0.001)."""
    last = float(schedule[-1])
    return last <= 0 or last < lowest_sigma(model_sampling) * (1 - 1e-3)


def step_positions(schedule: torch.Tensor, model_sampling, zero_is_the_end: bool = True) -> list:
    """The position (0..1) of each step of ``schedule`` (one fewer than its sigmas). ``zero_is_the_end``:
    False when the schedule's final zero replaced a mid-schedule sigma (a pass stopped early), so that its
    last step is placed by its own noise level like every other."""
    steps = int(schedule.shape[0]) - 1
    if steps < 1:
        return []
    positions = noise_positions(schedule[:steps], model_sampling)
    if zero_is_the_end and ends_denoising(schedule, model_sampling):
        positions[-1] = 1.0
    return positions


def in_window(position: float, start_percent: float, end_percent: float) -> bool:
    return start_percent - TOLERANCE <= position <= end_percent + TOLERANCE


def steps_on(schedule: torch.Tensor, model_sampling, start_percent: float, end_percent: float = 1.0) -> list:
    """The indices of the steps of ``schedule`` that the rule adapts."""
    return [i for i, p in enumerate(step_positions(schedule, model_sampling))
            if in_window(p, start_percent, end_percent)]


def step_of(sigma: float, schedule: torch.Tensor) -> int:
    """The step a model call at ``sigma`` belongs to by noise level alone (for samplers without a step loop)."""
    steps = max(int(schedule.shape[0]) - 1, 1)
    points = schedule[:steps].detach().float().cpu()
    index = int((points >= sigma * (1 - _RTOL)).sum().item()) - 1
    return min(max(index, 0), steps - 1)


class GateState:
    """Whether the adapter is on for the model evaluation under way.

    ``base_model`` is the MODEL's BaseModel: its ``model_sampling`` is read at
    call time, so a model sampling patched in later (AnimateDiff-Evolved's beta
    schedule, ModelSamplingDiscrete) is the one the positions are measured in.
    """

    def __init__(self, start_percent: float, end_percent: float = 1.0, base_model=None):
        self.start_percent = float(start_percent)
        self.end_percent = float(end_percent)
        self.base_model = base_model
        self.every_step = self.start_percent <= 0 and self.end_percent >= 1
        self.active = self.every_step
        self._seen = None
        self._positions = (None, None, None, None)   # schedule, model sampling, its last sigma, _facts()
        self._warned = False
        self._pinned = False   # a recomputation replays a recorded state: observe() leaves it alone
        _LIVE.add(self)

    def _model_sampling(self):
        return getattr(self.base_model, "model_sampling", None)

    def _facts(self, schedule: torch.Tensor, model_sampling, frame) -> tuple:
        """``(positions, points)`` of ``schedule``: its steps' positions and its sigmas as a CPU tensor (what
        :func:`step_of` places a call by), worked out once per schedule (``frame``: where to look for the
        sampler). A schedule is told by its identity, and where reading it costs nothing (on the CPU) by its
        last sigma as well. A schedule on a GPU is not read again: a value read to the host makes it wait for the
        GPU's queued work, at every model call."""
        cached_schedule, cached_sampling, cached_last, facts = self._positions
        last = float(schedule[-1]) if schedule.device.type == "cpu" else None
        if cached_schedule is not schedule or cached_sampling is not model_sampling or cached_last != last:
            facts = (step_positions(schedule, model_sampling, zero_is_the_end=not stopped_early(frame)),
                     schedule.detach().float().cpu())
            self._positions = (schedule, model_sampling, last, facts)
        return facts

    def observe(self, options: dict, frame=None) -> None:
        if self._pinned:
            return
        sigma = options.get("sigmas")
        if sigma is not None and sigma is self._seen:
            return  # same evaluation, later block: decided already
        self._seen = sigma
        if self.every_step:
            self.active = True
            return
        frame = frame if frame is not None else sys._getframe(1)
        place = sampler_place(frame)
        schedule = place.schedule if place.index is not None else options.get("sample_sigmas", place.schedule)
        model_sampling = self._model_sampling()
        if sigma is None or schedule is None or model_sampling is None or schedule.shape[0] < 2:
            self.active = False
            if not self._warned:
                self._warned = True
                log.warning("[PersonalVideo] the sampler gave no schedule to the model; the SIA adapter stays "
                            "off for this run (start_percent > 0 or end_percent < 1).")
            return
        positions, points = self._facts(schedule, model_sampling, frame)
        index = place.index if place.index is not None else step_of(float(sigma.reshape(-1)[0]), points)
        self.active = in_window(positions[index], self.start_percent, self.end_percent)


_LIVE = weakref.WeakSet()   # every gate state alive (one per applied adapter)


def states() -> list:
    """The on/off state of every live gate now: what a checkpointed region records when its forward ends."""
    return [(state, state.active) for state in list(_LIVE)]


@contextlib.contextmanager
def replayed(recorded: list):
    """Within the block each recorded gate is pinned to its recorded state (a region's recomputation)."""
    previous = [(state, state.active, state._pinned) for state, _ in recorded]
    try:
        for state, active in recorded:
            state.active, state._pinned = active, True
        yield
    finally:
        for state, active, pinned in reversed(previous):
            state.active, state._pinned = active, pinned


def make_gate(start_percent: float, end_percent: float = 1.0, base_model=None):
    """A gate state and the attn1 patch that updates it before each self-attention.

    The patch is a closure (ComfyUI deep-copies model_options on clone; a
    closure keeps pointing at this one state) and leaves its inputs untouched.
    """
    state = GateState(start_percent, end_percent, base_model)

    def observe_step(n, context_attn1, value_attn1, extra_options):
        state.observe(extra_options, sys._getframe(1))
        return n, context_attn1, value_attn1

    return state, observe_step
