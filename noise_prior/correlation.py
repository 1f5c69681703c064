"""The 3D Gaussian noise prior (Magic-Me, Eq. 4): noise of an f-frame video drawn from N(0, Sigma_f(gamma))
with Sigma_mn = gamma^|m-n|, independently for every latent channel and position.

That covariance is the one of a stationary first-order autoregression along the frames:

    x_0 = z_0,    x_n = gamma * x_(n-1) + sqrt(1 - gamma^2) * z_n        (z i.i.d. N(0, 1))

so the prior is made from ordinary independent noise ``z`` in one pass over the frames: every x_n is
N(0, 1) and Cov(x_m, x_n) = gamma^|m-n| exactly. gamma = 0 returns ``z`` itself (the very tensor, bit for
bit), so switching the prior off changes nothing else in a workflow.
"""
from __future__ import annotations

import math

import torch

from .errors import NoisePriorError

GAMMA_RANGE = (0.0, 0.99)
PAPER_GAMMA = 0.15  # the paper's experiments


def check_gamma(gamma) -> float:
    try:
        value = float(gamma)
    except (TypeError, ValueError):
        raise NoisePriorError(f"gamma must be a number between {GAMMA_RANGE[0]} and {GAMMA_RANGE[1]}, "
                              f"got {gamma!r}") from None
    if not (GAMMA_RANGE[0] <= value <= GAMMA_RANGE[1]):
        raise NoisePriorError(f"gamma must be between {GAMMA_RANGE[0]} and {GAMMA_RANGE[1]} (0 = independent "
                              f"frames, {PAPER_GAMMA} as in the paper), got {value}")
    return value


def frame_axis(noise: torch.Tensor) -> int:
    """The frame axis of a latent: the batch of an image latent [F, C, H, W] (what AnimateDiff treats as
    frames), the time axis of a video latent [B, C, T, H, W]."""
    if noise.ndim == 4:
        return 0
    if noise.ndim == 5:
        return 2
    raise NoisePriorError(f"the noise prior needs a latent of frames [F, C, H, W], got shape {tuple(noise.shape)}")


def correlate_frames(noise: torch.Tensor, gamma: float) -> torch.Tensor:
    """Independent N(0, 1) ``noise`` made into the prior's noise along its frame axis (a new tensor;
    ``noise`` itself when gamma is 0)."""
    gamma = check_gamma(gamma)
    axis = frame_axis(noise)
    if gamma == 0.0 or noise.shape[axis] < 2:
        return noise
    z = noise.movedim(axis, 0)
    keep, fresh = gamma, math.sqrt(1.0 - gamma * gamma)
    out = torch.empty_like(z)
    out[0] = z[0]
    for n in range(1, z.shape[0]):
        out[n] = keep * out[n - 1] + fresh * z[n]
    return out.movedim(0, axis)


def frame_covariance(frames: int, gamma: float) -> torch.Tensor:
    """Sigma_f(gamma) of the paper: [frames, frames] with gamma^|m-n| (float64)."""
    gamma = check_gamma(gamma)
    idx = torch.arange(frames, dtype=torch.float64)
    return torch.tensor(gamma, dtype=torch.float64) ** (idx[:, None] - idx[None, :]).abs()
