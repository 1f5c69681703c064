"""Seedable augmentation of aligned reference crops.

PersonalVideo colour-jitters the reference faces; light geometric jitter (small
rotation, scale and shift, optional mirror) makes the reference embedding less
tied to one alignment.  Everything is drawn from a ``torch.Generator`` seeded by
the caller, so the same seed gives the same crops.

Crops are [N, 3, S, S] RGB float in 0..1; the output keeps that layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class AugmentConfig:
    brightness: float = 0.2  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.2  # blend with the mean grey by U(1 - c, 1 + c)
    saturation: float = 0.2  # blend with the luma by U(1 - s, 1 + s)
    hue: float = 0.03  # rotate hue by U(-h, h) turns
    rotation_deg: float = 4.0
    scale: float = 0.04
    shift_px: float = 2.0
    mirror: bool = True


def _uniform(gen, n, spread):
    return (torch.rand(n, generator=gen) * 2.0 - 1.0) * spread


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate chroma around the grey axis (a YIQ-space rotation)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, x)
    angle = turns * 2.0 * math.pi
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
    return torch.einsum("ij,njhw->nihw", from_yiq, yiq)


def colour_jitter(crops: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    n = crops.shape[0]
    x = crops.float().cpu()
    x = x * (1.0 + _uniform(gen, n, cfg.brightness))[:, None, None, None]
    grey = (x * _LUMA[None, :, None, None]).sum(1, keepdim=True)
    mean = grey.mean((2, 3), keepdim=True)
    c = (1.0 + _uniform(gen, n, cfg.contrast))[:, None, None, None]
    x = mean + c * (x - mean)
    grey = (x * _LUMA[None, :, None, None]).sum(1, keepdim=True)
    s = (1.0 + _uniform(gen, n, cfg.saturation))[:, None, None, None]
    x = grey + s * (x - grey)
    if cfg.hue > 0:
        x = _rotate_hue(x, _uniform(gen, n, cfg.hue))
    return x.clamp(0.0, 1.0)


def geometric_jitter(crops: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    n, _, h, w = crops.shape
    angle = _uniform(gen, n, math.radians(cfg.rotation_deg))
    scale = 1.0 + _uniform(gen, n, cfg.scale)
    shift = torch.stack([_uniform(gen, n, cfg.shift_px) * 2.0 / w, _uniform(gen, n, cfg.shift_px) * 2.0 / h], 1)
    flip = (torch.rand(n, generator=gen) < 0.5) if cfg.mirror else torch.zeros(n, dtype=torch.bool)
    sx = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(angle) / scale * sx
    theta[:, 0, 1] = -torch.sin(angle) / scale
    theta[:, 1, 0] = torch.sin(angle) / scale * sx
    theta[:, 1, 1] = torch.cos(angle) / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [n, crops.shape[1], h, w], align_corners=False)
    return F.grid_sample(crops.float().cpu(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_crops(crops: torch.Tensor, copies: int, seed: int, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """``copies`` augmented versions of every crop, [N * copies, 3, S, S], crop-major."""
    if copies <= 0 or crops.shape[0] == 0:
        return crops.new_zeros((0,) + tuple(crops.shape[1:]))
    gen = torch.Generator().manual_seed(int(seed))
    x = crops.detach().float().cpu().repeat_interleave(copies, 0)
    return colour_jitter(geometric_jitter(x, gen, cfg), gen, cfg)
