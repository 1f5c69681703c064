"""Per-frame region masks of the people of a video, one MASK per person, numbered from left to right.

Each frame is cut into vertical bands, one per person found in it: the boundary between two neighbouring
people lies halfway between their tracks' centres (so the bands follow the people as they move, and every
column of the picture belongs to someone); ``feather`` softens each boundary over that fraction of the
width. With a person mask (from another pack's segmentation) each band is narrowed to the person mask's
pixels, so a region is the person's own silhouette. A person missing from a frame (beyond the track's gap
filling) has an empty region there.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .simple import cell_centres, ramp

MIN_BLOB_SHARE = 0.002   # blobs of a person mask smaller than this share of the frame are ignored


def face_candidates(boxes_per_frame: list) -> list:
    """Per frame, (x, y, size) of each face box (x1, y1, x2, y2)."""
    return [[((float(b[0]) + float(b[2])) / 2.0, (float(b[1]) + float(b[3])) / 2.0,
              max(float(b[2]) - float(b[0]), float(b[3]) - float(b[1]))) for b in boxes]
            for boxes in boxes_per_frame]


def blob_candidates(person_mask: torch.Tensor, threshold: float = 0.5) -> list:
    """Per frame of a MASK [F, H, W], (x, y, size) of each connected blob above ``threshold``."""
    from scipy import ndimage

    found = []
    for frame in person_mask:
        binary = frame.detach().float().cpu().numpy() > threshold
        labels, count = ndimage.label(binary)
        least = MIN_BLOB_SHARE * binary.size
        blobs = []
        for index in range(1, count + 1):
            ys, xs = np.nonzero(labels == index)
            if len(xs) >= least:
                blobs.append((float(xs.mean()), float(ys.mean()), math.sqrt(len(xs))))
        found.append(blobs)
    return found


def band_masks(tracks: list, height: int, width: int, feather: float = 0.0, scale_x: float = 1.0) -> torch.Tensor:
    """[people, F, height, width]: each person's vertical band per frame (see the module doc).

    ``scale_x`` maps the tracks' x positions to this width (when they were found on frames of another size)."""
    people, frames = len(tracks), tracks[0].frames
    xs = cell_centres(width)
    out = torch.zeros(people, frames, height, width)
    for f in range(frames):
        present = sorted((float(t.centres[f][0]) * scale_x / width, p) for p, t in enumerate(tracks)
                         if t.has_face(f))
        for rank, (centre, person) in enumerate(present):
            band = torch.ones(width)
            if rank > 0:
                band = band * ramp(xs, (present[rank - 1][0] + centre) / 2, feather, rising=True)
            if rank < len(present) - 1:
                band = band * ramp(xs, (centre + present[rank + 1][0]) / 2, feather, rising=False)
            out[person, f] = band.expand(height, width)
    return out


def person_region_masks(tracks: list, height: int, width: int, feather: float = 0.0, person_mask=None,
                        source_width: int | None = None) -> torch.Tensor:
    """[people, F, height, width] region masks of the tracked people (see the module doc)."""
    masks = band_masks(tracks, height, width, feather, width / source_width if source_width else 1.0)
    if person_mask is not None:
        silhouettes = person_mask.detach().float().cpu().clamp(0.0, 1.0)
        if tuple(silhouettes.shape[-2:]) != (height, width):
            silhouettes = F.interpolate(silhouettes[:, None], size=(height, width), mode="bilinear",
                                        align_corners=False)[:, 0]
        masks = masks * silhouettes.unsqueeze(0)
    return masks
