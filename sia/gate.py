"""The late-step gate: the adapter acts only on the last part of the schedule.

A sampling step i of a run with n steps (schedule sigmas s_0 > ... > s_n) is
gated on when ``i / (n - 1) >= start_percent`` (a one-step run counts as its
last step).  For 4 LCM steps and start 0.75 that is exactly the last step, for
20 steps exactly the last 5; start 0 means every step, start 1 only the last.

The step index comes from the sampler's actual schedule, never from a sigma
threshold (4-step LCM schedules put the last sigma on either side of
``percent_to_sigma(0.75)`` depending on the model sampling):
- ComfyUI since late 2024 passes the run's schedule to the model as
  ``transformer_options["sample_sigmas"]`` and the current sigma as ``["sigmas"]``;
- on older hosts (e.g. the March 2024 tree) ``install_schedule_fallback`` wraps
  ``comfy.samplers.sample``, through which every sampler of those hosts runs,
  so that it adds ``sample_sigmas`` to the model options the same way.
If a run reaches the model without a schedule all the same (a third-party
sampling loop that bypasses ComfyUI's), the gate stays closed for that run
(the adapter is off) unless start_percent is 0, and a warning says so once.

Evaluations between two schedule points (second-order samplers) belong to the
step they start from.
"""
from __future__ import annotations

import functools
import inspect
import logging

import torch

log = logging.getLogger("PersonalVideo")
_RTOL = 1e-4


def step_of(sigma: float, schedule: torch.Tensor) -> tuple:
    """(step index, number of steps) of a model evaluation at ``sigma`` within ``schedule``."""
    steps = max(int(schedule.shape[0]) - 1, 1)
    points = schedule[:steps].detach().float().cpu()
    index = int((points >= sigma * (1 - _RTOL)).sum().item()) - 1
    return min(max(index, 0), steps - 1), steps


def gate_opens(index: int, steps: int, start_percent: float) -> bool:
    fraction = 1.0 if steps <= 1 else index / (steps - 1)
    return fraction >= start_percent - 1e-9


class GateState:
    """Whether the adapter is on for the model evaluation under way."""

    def __init__(self, start_percent: float):
        self.start_percent = float(start_percent)
        self.active = self.start_percent <= 0
        self._seen = (None, None)
        self._warned = False

    def observe(self, options: dict) -> None:
        sigmas, schedule = options.get("sigmas"), options.get("sample_sigmas")
        if self._seen[0] is sigmas and self._seen[1] is schedule:
            return  # same evaluation, later block: decided already
        self._seen = (sigmas, schedule)
        if self.start_percent <= 0:
            self.active = True
        elif sigmas is None or schedule is None:
            self.active = False
            if not self._warned:
                self._warned = True
                log.warning("[PersonalVideo] the sampler gave no schedule to the model; "
                            "the SIA adapter stays off for this run (start_percent > 0).")
        else:
            index, steps = step_of(float(sigmas.reshape(-1)[0]), schedule)
            self.active = gate_opens(index, steps, self.start_percent)


def make_gate(start_percent: float):
    """A gate state and the attn1 patch that updates it before each self-attention.

    The patch is a closure (ComfyUI deep-copies model_options on clone; a
    closure keeps pointing at this one state) and leaves its inputs untouched.
    """
    state = GateState(start_percent)

    def observe_step(n, context_attn1, value_attn1, extra_options):
        state.observe(extra_options)
        return n, context_attn1, value_attn1

    return state, observe_step


@functools.lru_cache(maxsize=None)
def host_passes_schedule() -> bool:
    import comfy.samplers

    return "sample_sigmas" in inspect.getsource(comfy.samplers)


def install_schedule_fallback() -> bool:
    """On hosts that do not pass ``sample_sigmas``, wrap comfy.samplers.sample to add it. Idempotent."""
    import comfy.samplers

    current = comfy.samplers.sample
    if getattr(current, "_personalvideo_schedule", False) or host_passes_schedule():
        return False

    def sample(model, noise, positive, negative, cfg, device, sampler, sigmas, model_options={}, **kwargs):
        options = dict(model_options)
        transformer_options = dict(options.get("transformer_options", {}))
        transformer_options["sample_sigmas"] = sigmas
        options["transformer_options"] = transformer_options
        return current(model, noise, positive, negative, cfg, device, sampler, sigmas, options, **kwargs)

    sample._personalvideo_schedule = True
    sample.__wrapped__ = current
    comfy.samplers.sample = sample
    log.info("[PersonalVideo] host gives no sample_sigmas; added them to comfy.samplers.sample")
    return True
