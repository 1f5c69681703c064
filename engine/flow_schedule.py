"""Wan's flow-matching schedule in the engine, computed as ComfyUI core computes it, and the late gate on it.

Core's Wan sampling (``ModelSamplingDiscreteFlow`` at ``shift``, 8 for Wan 2.1 T2V unless ModelSamplingSD3 sets
another) holds a table of 1000 noise levels sigma(t) = shift t / (1 + (shift - 1) t) at t = 1/1000 .. 1; its
``simple`` scheduler takes ``steps`` of them evenly from the top and ends at 0.  The engine takes the same
numbers (:func:`simple_sigmas`), feeds the model ``timestep = 1000 sigma`` as core does, and starts from
``sigma_0 * noise`` (core's flow noise scaling on an empty latent), so with the same noise a run of the engine
and of core's ``euler`` sampler walk the same noise levels.

The gate (:func:`adapted_steps`): a step is adapted when the position 1 - t of the noise level it starts from
lies in [start_percent, end_percent] (:func:`..sia.noise_position.flow_positions`, the inverse of core's
``percent_to_sigma`` at the shift), and the step that ends the denoising is at 1.0, the nodes' rule
(:mod:`..sia.gate`); so with the default 0.75 the adapter acts where sigma <= percent_to_sigma(0.75).
"""
from __future__ import annotations

import torch

from ..sia.gate import in_window
from ..sia.noise_position import flow_positions

TIMESTEPS = 1000
MULTIPLIER = 1000.0


def sigma_table(shift: float) -> torch.Tensor:
    """The 1000 noise levels of core's flow sampling at ``shift`` (ascending)."""
    t = torch.arange(1, TIMESTEPS + 1, 1) / TIMESTEPS
    return shift * t / (1 + (shift - 1) * t)


def simple_sigmas(steps: int, shift: float) -> torch.Tensor:
    """``steps`` + 1 noise levels: core's ``simple`` scheduler on the table at ``shift``, then 0."""
    table = sigma_table(shift)
    stride = len(table) / steps
    return torch.FloatTensor([float(table[-(1 + int(x * stride))]) for x in range(steps)] + [0.0])


def timestep(sigma) -> torch.Tensor:
    """The model's timestep input for a noise level (core's ``timestep``: 1000 sigma)."""
    return torch.as_tensor(sigma, dtype=torch.float32).reshape(1) * MULTIPLIER


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """Euler's update along ``(x - denoised) / sigma`` (core's ``euler`` sampler without churn)."""
    return x + (x - denoised) / sigma * (sigma_next - sigma)


def adapted_steps(sigmas: torch.Tensor, shift: float, start_percent: float, end_percent: float = 1.0) -> list:
    """The indices of the steps of ``sigmas`` the adapter acts on (the nodes' rule, see the module)."""
    steps = int(sigmas.shape[0]) - 1
    if steps < 1:
        return []
    positions = [float(p) for p in flow_positions(sigmas[:steps], shift)]
    if float(sigmas[-1]) <= 0:
        positions[-1] = 1.0
    return [i for i, p in enumerate(positions) if in_window(p, start_percent, end_percent)]
