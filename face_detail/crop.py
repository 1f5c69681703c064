"""Square face crops with context, from a face track, resized to the working size of the re-denoise.

A crop is the track's face box grown by ``padding`` (a fraction of the box side on every side), kept
inside the frame (moved in, and shrunk only when the frame is smaller than the crop), in whole pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MIN_CROP_PX = 8


@dataclass(frozen=True)
class CropBox:
    left: int
    top: int
    side: int

    @property
    def slices(self) -> tuple:
        return slice(self.top, self.top + self.side), slice(self.left, self.left + self.side)


def crop_box(centre, size: float, padding: float, height: int, width: int) -> CropBox:
    side = int(round(size * (1.0 + 2.0 * padding)))
    side = max(MIN_CROP_PX, min(side, height, width))
    left = int(round(float(centre[0]) - side / 2.0))
    top = int(round(float(centre[1]) - side / 2.0))
    return CropBox(min(max(left, 0), width - side), min(max(top, 0), height - side), side)


def track_crop_boxes(track, padding: float, height: int, width: int) -> list:
    """One :class:`CropBox` per frame of ``track``, None where it has no face."""
    return [crop_box(track.centres[i], track.sizes[i], padding, height, width) if track.has_face(i) else None
            for i in range(track.frames)]


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """IMAGE [N, h, w, C] to [N, size, size, C] (bicubic, antialiased when shrinking, kept in 0..1)."""
    x = images.movedim(-1, 1)
    shrink = size < x.shape[-1]
    out = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=shrink)
    return out.clamp(0.0, 1.0).movedim(1, -1)


def cut_crops(frames: torch.Tensor, boxes: list, working_size: int) -> torch.Tensor:
    """The crops of the frames that have a box, in frame order, as IMAGE [N, working_size, working_size, C]."""
    crops = [resize_images(frames[i:i + 1, box.slices[0], box.slices[1]].float(), working_size)
             for i, box in enumerate(boxes) if box is not None]
    return torch.cat(crops, 0)
