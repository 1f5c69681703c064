"""Pasting re-denoised face crops back into their frames with a feathered mask.

The mask is 1 inside the crop square and falls to 0 towards its edges over ``feather`` (a fraction of
the crop side; 0 = a hard edge); outside the square it is 0, and there the frame is returned bit for bit
(the blend is only written where the mask is above 0).
"""
from __future__ import annotations

import torch

from .crop import resize_images


def feather_mask(side: int, feather: float) -> torch.Tensor:
    """[side, side] mask: smoothstep ramps from each edge over ``feather * side`` pixels."""
    ramp_px = float(feather) * side
    pos = torch.arange(side, dtype=torch.float32) + 0.5
    edge = torch.minimum(pos, side - pos)
    if ramp_px <= 0:
        ramp = torch.ones(side)
    else:
        t = (edge / ramp_px).clamp(0.0, 1.0)
        ramp = t * t * (3.0 - 2.0 * t)
    return ramp[:, None] * ramp[None, :]


def paste_crops(frames: torch.Tensor, crops: torch.Tensor, boxes: list, feather: float) -> tuple:
    """(frames with the crops pasted back, MASK [F, H, W] of where and how much they were).

    ``crops`` holds one crop per frame with a box, in frame order (as :func:`cut_crops` made them).
    """
    out = frames.clone()
    masks = torch.zeros(frames.shape[:3], dtype=torch.float32)
    k = 0
    for i, box in enumerate(boxes):
        if box is None:
            continue
        rows, cols = box.slices
        face = resize_images(crops[k:k + 1].float(), box.side)[0].to(frames)
        k += 1
        mask = feather_mask(box.side, feather)
        region = frames[i, rows, cols]
        weight = mask[..., None].to(frames)
        blended = region + (face - region) * weight
        out[i, rows, cols] = torch.where(weight > 0, blended, region)
        masks[i, rows, cols] = mask
    return out, masks
