"""Simple regions sized to a latent: left/right halves and boxes, as MASKs at the latent's picture size.

Positions are fractions of the picture (0 = left/top edge, 1 = right/bottom edge), so the same numbers
fit any resolution; ``feather`` is a soft edge, as a fraction of the picture's width, that the adapter
and the host's mask conditioning both take as partial weights.
"""
from __future__ import annotations

import torch

from .errors import RegionError

LATENT_SCALE = 8   # SD1.5's VAE: one latent cell is 8x8 pixels


def picture_size(latent) -> tuple:
    """(height, width) in pixels of a LATENT (``{"samples": [frames, 4, h, w]}``)."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise RegionError("the latent input must be a LATENT (e.g. from 'Empty Latent Image'); "
                          f"got {type(latent).__name__}.")
    return int(samples.shape[-2]) * LATENT_SCALE, int(samples.shape[-1]) * LATENT_SCALE


def ramp(positions: torch.Tensor, edge: float, feather: float, rising: bool) -> torch.Tensor:
    """1 past ``edge`` (to the right when ``rising``), 0 before it, linear over ``feather`` centred on it."""
    if feather <= 0:
        inside = positions >= edge if rising else positions < edge
        return inside.float()
    t = ((positions - edge) / feather + 0.5).clamp(0.0, 1.0)
    return t if rising else 1.0 - t


def cell_centres(count: int) -> torch.Tensor:
    return (torch.arange(count, dtype=torch.float32) + 0.5) / count


def check_fraction(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise RegionError(f"{name} must be between 0.0 and 1.0 of the picture (got {value!r}).")
    return float(value)


def halves(height: int, width: int, split: float = 0.5, feather: float = 0.0) -> tuple:
    """(left, right) MASKs [1, height, width], split at ``split`` of the width; they add up to 1 everywhere."""
    split, feather = check_fraction("split", split), check_fraction("feather", feather)
    xs = cell_centres(width)
    right = ramp(xs, split, feather, rising=True).expand(height, width)
    return (1.0 - right).unsqueeze(0).clone(), right.unsqueeze(0).clone()


def box_mask(height: int, width: int, x: float, y: float, box_width: float, box_height: float,
             feather: float = 0.0) -> torch.Tensor:
    """A MASK [1, height, width]: 1 inside the box whose top-left corner is (x, y), sizes as fractions."""
    x, y = check_fraction("x", x), check_fraction("y", y)
    box_width, box_height = check_fraction("width", box_width), check_fraction("height", box_height)
    feather = check_fraction("feather", feather)
    if box_width == 0 or box_height == 0 or x >= 1 or y >= 1:
        raise RegionError(f"the box ({x}, {y}, {box_width} x {box_height}) covers nothing of the picture; "
                          "give it a width and height above 0 and a corner inside the picture.")
    xs, ys = cell_centres(width), cell_centres(height)
    vertical_feather = feather * width / height
    columns = ramp(xs, x, feather, True) * ramp(xs, x + box_width, feather, False)
    rows = ramp(ys, y, vertical_feather, True) * ramp(ys, y + box_height, vertical_feather, False)
    return (rows[:, None] * columns[None, :]).unsqueeze(0)
