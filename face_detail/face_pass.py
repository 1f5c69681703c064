"""The face detail pass (Magic-Me's Face VCD) on a generated video: track the face, crop it with context,
re-denoise the face video partially with the same MODEL, paste it back with a feathered mask."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .crop import MIN_CROP_PX, cut_crops, track_crop_boxes
from .detect import frame_detector
from .errors import FaceDetailError
from .paste import paste_crops
from .preview import draw_track
from .redenoise import redenoise
from .track import FILLED, NO_FACE, build_track

log = logging.getLogger("PersonalVideo")


@dataclass
class SamplingSettings:
    seed: int = 0
    steps: int = 6
    cfg: float = 1.5
    sampler_name: str = "lcm"
    scheduler: str = "sgm_uniform"
    denoise: float = 0.8


@dataclass
class FaceDetailResult:
    images: torch.Tensor       # IMAGE [F, H, W, 3]
    masks: torch.Tensor        # MASK [F, H, W]
    preview: torch.Tensor      # IMAGE [F, H, W, 3]
    summary: str
    faces: int
    filled: int
    passed_through: int


def check_frames(images) -> torch.Tensor:
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[-1] != 3:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise FaceDetailError(f"images must be an IMAGE batch of video frames [frames, height, width, 3], got {shape}")
    if images.shape[0] == 0:
        raise FaceDetailError("images holds no frames (the batch is empty)")
    if min(images.shape[1:3]) < MIN_CROP_PX:
        raise FaceDetailError(f"the frames are only {images.shape[2]}x{images.shape[1]} pixels: too small for a "
                              "face detail pass")
    return images


def check_settings(working_size: int, padding: float, feather: float, denoise: float) -> None:
    if working_size < 64 or working_size % 8:
        raise FaceDetailError(f"working_size must be a multiple of 8 and at least 64, got {working_size}")
    if padding < 0:
        raise FaceDetailError(f"padding must be 0 or more, got {padding}")
    if not 0 <= feather <= 0.5:
        raise FaceDetailError(f"mask_feather must be between 0 and 0.5 of the crop side, got {feather}")
    if not 0 < denoise <= 1:
        raise FaceDetailError(f"denoise must be above 0 and at most 1, got {denoise}")


def summarise(frames: int, track) -> str:
    faces, filled, none = frames - track.count(NO_FACE), track.count(FILLED), track.count(NO_FACE)
    text = f"face detail: {faces} of {frames} frames re-denoised ({filled} filled from neighbouring frames)"
    return text + (f"; {none} without a face passed through unchanged" if none else "")


def face_detail_pass(images, detect, model, positive, negative, vae, sampling: SamplingSettings,
                     working_size: int = 512, padding: float = 0.5, feather: float = 0.15,
                     smoothing: float = 2.0, max_gap: int = 4, resample=redenoise,
                     detect_index=None) -> FaceDetailResult:
    """The pass over IMAGE ``images`` with ``detect(frame) -> box or None`` (or ``detect_index(frames)``, giving
    ``index -> box or None``, e.g. the face inside one person's region: :func:`.detect.region_detector`);
    ``resample`` re-denoises the face video (the host's sampler; replaceable for scripts)."""
    frames = check_frames(images)
    check_settings(working_size, padding, feather, sampling.denoise)
    count, height, width = frames.shape[0], frames.shape[1], frames.shape[2]
    by_index = detect_index(frames) if detect_index is not None else frame_detector(frames, detect)
    track = build_track(count, by_index, smoothing=smoothing, max_gap=max_gap)
    boxes = track_crop_boxes(track, padding, height, width)
    summary = summarise(count, track)
    log.info("[PersonalVideo] %s", summary)
    preview = draw_track(frames, boxes, track.states)
    if all(b is None for b in boxes):
        return FaceDetailResult(frames, torch.zeros(frames.shape[:3]), preview, summary, 0, 0, count)
    crops = cut_crops(frames, boxes, working_size)
    redone = resample(model, positive, negative, vae, crops, sampling.seed, sampling.steps, sampling.cfg,
                      sampling.sampler_name, sampling.scheduler, sampling.denoise)
    if redone.shape[0] != crops.shape[0]:
        raise FaceDetailError(f"the sampler returned {redone.shape[0]} face frames for {crops.shape[0]}: connect a "
                              "MODEL that keeps the batch of frames (one video)")
    out, masks = paste_crops(frames, redone, boxes, feather)
    return FaceDetailResult(out, masks, preview, summary, count - track.count(NO_FACE), track.count(FILLED),
                            track.count(NO_FACE))
