"""The face track drawn on the frames: the crop square of each face frame (green where the face was
detected, orange where it was filled from neighbouring frames); frames without a face get no box."""
from __future__ import annotations

import torch

from .track import DETECTED

COLOURS = {True: (0.1, 0.9, 0.2), False: (1.0, 0.6, 0.0)}


def draw_track(frames: torch.Tensor, boxes: list, states: list) -> torch.Tensor:
    out = frames[..., :3].float().cpu().clone()
    height, width = out.shape[1:3]
    line = max(1, round(min(height, width) / 128))
    for i, box in enumerate(boxes):
        if box is None:
            continue
        colour = torch.tensor(COLOURS[states[i] == DETECTED])
        top, left, side = box.top, box.left, box.side
        bottom, right = top + side, left + side
        out[i, top:top + line, left:right] = colour
        out[i, bottom - line:bottom, left:right] = colour
        out[i, top:bottom, left:left + line] = colour
        out[i, top:bottom, right - line:right] = colour
    return out
