"""Per-frame person regions of a video, from the frames' faces or from another pack's person mask."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..face_detail.detect import frame_detector
from ..face_detail.track import NO_FACE
from .assign import assign_people
from .errors import RegionError
from .person_masks import blob_candidates, face_candidates, person_region_masks

COLOURS = ((0.1, 0.8, 0.2), (0.9, 0.4, 0.1), (0.2, 0.4, 0.9), (0.9, 0.1, 0.7))


@dataclass
class PersonRegions:
    masks: torch.Tensor      # [people, F, H, W], person 0 the leftmost in the first frame showing everyone
    preview: torch.Tensor    # IMAGE [F, H, W, 3]: the regions tinted over the frames
    summary: str


def _preview(frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    out = frames[..., :3].detach().float().cpu().clone()
    for person, mask in enumerate(masks):
        colour = torch.tensor(COLOURS[person % len(COLOURS)])
        weight = 0.45 * mask.unsqueeze(-1)
        out = out * (1 - weight) + colour * weight
    return out.clamp(0.0, 1.0)


def find_person_regions(frames: torch.Tensor, detect_all=None, person_mask=None, people: int = 2,
                        feather: float = 0.05, smoothing: float = 2.0, max_gap: int = 4) -> PersonRegions:
    """Regions of ``people`` people in IMAGE ``frames`` [F, H, W, C]: from the faces ``detect_all(frame)``
    finds, or from the blobs of a MASK ``person_mask`` [F, H, W] (then each region is the person's silhouette)."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[0] == 0:
        raise RegionError("the images input must be an IMAGE batch of video frames [frames, height, width, 3].")
    count, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    if person_mask is not None:
        if not isinstance(person_mask, torch.Tensor) or person_mask.ndim not in (2, 3):
            raise RegionError("the person_mask input must be a MASK [frames, height, width].")
        if person_mask.ndim == 2:
            person_mask = person_mask.unsqueeze(0)
        if person_mask.shape[0] == 1 and count > 1:
            person_mask = person_mask.expand(count, -1, -1)
        if person_mask.shape[0] != count:
            raise RegionError(f"the person_mask has {person_mask.shape[0]} frames but images has {count}; "
                              "give one mask per frame of the same video.")
        candidates, source, source_width = blob_candidates(person_mask), "person mask", int(person_mask.shape[-1])
    elif detect_all is not None:
        every_face = frame_detector(frames, detect_all)      # stops when the user cancels
        candidates = face_candidates([every_face(i) for i in range(count)])
        source, source_width = "faces", width
    else:
        raise RegionError("connect face_analysis (faces are found in the images) or person_mask (another "
                          "pack's mask of the people) to 'Person Regions (PersonalVideo)'.")
    tracks = assign_people(candidates, people, smoothing=smoothing, max_gap=max_gap)
    masks = person_region_masks(tracks, height, width, feather, person_mask, source_width)
    found = [count - t.count(NO_FACE) for t in tracks]
    summary = (f"person regions from {source}: {people} people numbered from left to right; frames with a "
               "region: " + ", ".join(f"person {p + 1} {n} of {count}" for p, n in enumerate(found)))
    return PersonRegions(masks, _preview(frames, masks), summary)
