"""Which steps of a diffusers scheduler's run the adapter acts on: the nodes' rule (:mod:`..sia.gate`).

A step is adapted when the position of its starting noise level in the model's own
noise schedule lies in [start_percent, end_percent] (the step that finishes the
denoising is at 1.0).  The model's schedule is SD1.5's table of 1000 noise levels
``sigma_t = sqrt((1 - abar_t) / abar_t)``, built from the scheduler's own
``alphas_cumprod``, so the positions are the ones ComfyUI's nodes measure.

A step's noise level: the scheduler's own ``sigmas`` where it keeps one per step
(Euler, DPM-Solver, ...), else the table at its timestep (DDIM, LCM, PNDM, ...).
Schedulers of order 2 (Heun, KDPM2, KDPM2 ancestral) call the model twice per step
(the second call at or below the next step's noise level) and list both calls in
``timesteps``: as in the nodes, both calls belong to the step they complete, which is
placed by the noise level of its first call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sia.gate import steps_on


@dataclass
class TableSampling:
    """The model's noise schedule as :mod:`..sia.noise_position` reads it."""

    sigmas: torch.Tensor

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas.min())

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas.max())


def model_sampling(scheduler) -> TableSampling:
    abar = scheduler.alphas_cumprod.double()
    return TableSampling(((1 - abar) / abar).sqrt().float())


def run_schedule(scheduler, table: TableSampling | None = None) -> torch.Tensor:
    """The noise level of each model call of the run ``scheduler`` was set up for, then 0 (fully denoised).
    ``table``: the scheduler's :func:`model_sampling`, where the caller has it already."""
    timesteps = scheduler.timesteps.detach().float().cpu()
    own = getattr(scheduler, "sigmas", None)
    if isinstance(own, torch.Tensor) and own.shape[0] == timesteps.shape[0] + 1:
        sigmas = own.detach().float().cpu().clone()
        sigmas[-1] = 0.0
        return sigmas
    table = (table or model_sampling(scheduler)).sigmas
    index = timesteps.clamp(0, table.shape[0] - 1)
    lo = index.floor().long()
    hi = index.ceil().long()
    frac = index - lo.float()
    levels = (table[lo].log() * (1 - frac) + table[hi].log() * frac).exp()  # fractional timesteps: log-interpolated
    return torch.cat([levels, torch.zeros(1)])


def calls_per_step(scheduler) -> int:
    """2 for the schedulers that evaluate the model twice per step (their ``timesteps`` list every call), else 1."""
    return 2 if int(getattr(scheduler, "order", 1)) == 2 else 1


def adapted_steps(scheduler, start_percent: float, end_percent: float = 1.0) -> list:
    """Indices (into ``scheduler.timesteps``) of the model calls the adapter is on for."""
    table = model_sampling(scheduler)
    calls = run_schedule(scheduler, table)
    per_step = calls_per_step(scheduler)
    n_calls = calls.shape[0] - 1
    steps = torch.cat([calls[:n_calls:per_step], calls[-1:]])   # each step's first call, then 0
    on = set(steps_on(steps, table, start_percent, end_percent))
    return [k for k in range(n_calls) if k // per_step in on]
