"""Where a noise level lies in the model's own noise schedule: 0.0 at its highest noise, 1.0 at its lowest.

This is the scale of ``start_percent`` / ``end_percent``.  For the discrete
schedules of SD1.5-family models (ComfyUI's ``model_sampling.sigmas``, one sigma
per training timestep: 1000 of them, 50 for LCM-distilled sampling, whatever
beta schedule AnimateDiff-Evolved swaps in) the position is the timestep of
the sigma, read continuously off that table in log-sigma and counted from the
top: 0.75 is timestep 249.75 of 999, where ComfyUI's own ``percent_to_sigma(0.75)``
puts it.  Every scheduler that spaces its steps evenly over the table
(sgm_uniform, normal, simple, ddim_uniform) therefore puts step i of n at
about i/n or i/(n-1), whatever the model sampling; LCM-distilled tables
included, where ``percent_to_sigma`` itself is off by a fraction of a table
entry.  Model samplings without a table use log-sigma between sigma_max and
sigma_min.  Noise at or below zero, and below the table's lowest sigma, is 1.0;
above its highest, 0.0.

Flow-matching model samplings (Wan 2.1 / 2.2: ``ModelSamplingDiscreteFlow``,
sigma = shift * t / (1 + (shift - 1) * t) for t in (0, 1], with the shift
in use, ``ModelSamplingSD3`` included) have a closed form: the position is
1 - t, the inverse of their own ``percent_to_sigma`` at any shift, so 0.75 is
sigma = percent_to_sigma(0.75) (0.727 at Wan 2.1's default shift 8, 0.5 at
shift 1).  Their 1000-entry table holds sigma at t = 1/1000 .. 1, one entry
off the continuous form, so it is not used for them.
"""
from __future__ import annotations

import math

import torch


def _sigma_table(model_sampling):
    table = getattr(model_sampling, "sigmas", None)
    if isinstance(table, torch.Tensor) and table.ndim == 1 and table.shape[0] >= 2:
        return table.detach().float().cpu()
    return None


def lowest_sigma(model_sampling) -> float:
    table = _sigma_table(model_sampling)
    return float(table.min()) if table is not None else float(model_sampling.sigma_min)


def flow_shift(model_sampling):
    """The shift of a flow-matching model sampling (core's ``ModelSamplingDiscreteFlow``), else None."""
    try:
        from comfy.model_sampling import ModelSamplingDiscreteFlow
    except ImportError:   # the March 2024 host has no flow-matching sampling
        return None
    if isinstance(model_sampling, ModelSamplingDiscreteFlow):
        return float(model_sampling.shift)
    return None


def flow_positions(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """The positions 1 - t of flow-matching noise levels at ``shift`` (sigma = shift t / (1 + (shift - 1) t));
    also the diffusers engine's Wan gate (:mod:`..engine.flow_schedule`)."""
    s = sigmas.detach().double().cpu().reshape(-1).clamp(0.0, 1.0)
    t = s / (shift - (shift - 1.0) * s)            # the inverse of sigma = shift t / (1 + (shift - 1) t)
    return (1.0 - t).float().clamp(0.0, 1.0)


def noise_positions(sigmas: torch.Tensor, model_sampling) -> list:
    """The position (0..1) of each sigma in ``sigmas`` within ``model_sampling``'s noise schedule."""
    values = sigmas.detach().float().cpu().reshape(-1)
    shift = flow_shift(model_sampling)
    table = _sigma_table(model_sampling) if shift is None else None
    if shift is not None:
        positions = flow_positions(values, shift)
    elif table is None:
        top, bottom = math.log(float(model_sampling.sigma_max)), math.log(float(model_sampling.sigma_min))
        logs = values.clamp(min=1e-30).log()
        positions = ((top - logs) / (top - bottom)).clamp(0.0, 1.0)
    else:
        log_table, _ = table.log().sort()            # ascending with the timestep
        last = log_table.shape[0] - 1
        logs = values.clamp(min=1e-30).log().clamp(float(log_table[0]), float(log_table[-1]))
        upper = torch.searchsorted(log_table, logs).clamp(1, last)
        lo, hi = log_table[upper - 1], log_table[upper]
        fraction = torch.where(hi > lo, (logs - lo) / (hi - lo), torch.zeros_like(logs))
        timestep = (upper - 1).float() + fraction
        positions = 1.0 - timestep / last
    positions = torch.where(values <= 0, torch.ones_like(positions), positions)
    return [float(p) for p in positions]
