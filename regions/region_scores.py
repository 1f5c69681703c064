"""Each region's face scored against every identity's reference photos (its own and the others').

A region's frames are the video with everything outside the region's mask set to grey, so the face the
scorer finds is the one inside it; each is scored with the pack's identity scorer
(:func:`..evaluation.evaluate.evaluate_video`). With two identities that work, a region scores higher
against its own photos than against the other person's.
"""
from __future__ import annotations

import torch

from .errors import RegionError

GREY = 0.5


def region_frames(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """IMAGE ``frames`` [F, H, W, 3] with the pixels outside MASK ``mask`` ([H, W] or [1 or F, H, W]) grey."""
    masks = mask if mask.ndim == 3 else mask.unsqueeze(0)
    if masks.shape[0] not in (1, frames.shape[0]):
        raise RegionError(f"the region mask has {masks.shape[0]} frames but the video has {frames.shape[0]}.")
    if tuple(masks.shape[-2:]) != tuple(frames.shape[1:3]):
        masks = torch.nn.functional.interpolate(masks[:, None].float(), size=tuple(frames.shape[1:3]),
                                                mode="bilinear", align_corners=False)[:, 0]
    inside = masks.clamp(0.0, 1.0).unsqueeze(-1).to(frames.dtype)
    return frames * inside + GREY * (1 - inside)


def score_regions(frames: torch.Tensor, masks: list, references: list, **scorer) -> list:
    """``[region][identity]`` score reports: region r's face against identity i's reference photos.

    ``masks``: one MASK per region; ``references``: one list of photos per identity; ``scorer``: the
    arguments of :func:`..evaluation.evaluate.evaluate_video` (recogniser, detector, face_analysis, ...)."""
    from ..evaluation.evaluate import evaluate_video

    return [[evaluate_video(region_frames(frames, mask), photos, **scorer) for photos in references]
            for mask in masks]
