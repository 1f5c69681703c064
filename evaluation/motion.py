"""A motion score from optical flow, approximating VBench's dynamic degree (see protocol.MOTION_NOTE).

OpenCV's DIS optical flow (no weights) between consecutive frames; per pair, the mean of the largest 5% flow
magnitudes, in pixels.  VBench (with RAFT) calls a pair moving above 6 px x (shorter side / 256) and a video
dynamic when at least round(4 x frames / 16) pairs move.

Flow between consecutive frames depends on the frame rate: the same motion moves half as far per frame at 16 fps
as at 8 fps. VBench first keeps every round(fps / 8)-th frame, so that pairs are about 1/8 s apart whatever the
video's rate; so do we when the frame rate is given (AnimateDiff at 8 fps: every frame; Wan 2.1 and Wan 2.2 A14B
at 16 fps: every 2nd; Wan 2.2 TI2V 5B at 24 fps: every 3rd). Without it the frames are used as given.
"""
from __future__ import annotations

import numpy as np

TOP_FRACTION = 0.05
THRESHOLD_AT_256 = 6.0
VBENCH_FPS = 8.0   # the rate VBench's dynamic degree samples a video at


def frame_stride(fps: float | None) -> int:
    """Keep every ``frame_stride(fps)``-th frame, as VBench does: round(fps / 8), at least 1; 1 when ``fps`` is
    unknown (None or 0: the frames as given)."""
    if not fps or fps <= 0:
        return 1
    return max(1, int(round(fps / VBENCH_FPS)))


def pair_magnitudes(frames: list) -> list:
    """Mean of the top 5% flow magnitudes for each consecutive pair of RGB uint8 frames (one size)."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    out = []
    for a, b in zip(grey[:-1], grey[1:]):
        flow = dis.calc(a, b, None)
        mag = np.sqrt((flow.astype(np.float64) ** 2).sum(axis=-1)).ravel()
        k = max(1, int(mag.size * TOP_FRACTION))
        out.append(float(np.mean(np.partition(mag, mag.size - k)[-k:])))
    return out


def motion_score(frames: list, fps: float | None = None) -> dict:
    """Per-pair magnitudes, the threshold, the moving pairs, the dynamic verdict and a scale-free mean.

    ``fps``: the video's frame rate; the pairs are then taken between every :func:`frame_stride`-th frame (about
    8 per second, as VBench does), so that videos at different rates compare. ``mean_motion_at_256`` is the mean
    per-pair magnitude rescaled to a 256 px shorter side (comparable across sizes).  With fewer than two frames
    left nothing is computed and ``reason`` says so.
    """
    h, w = frames[0].shape[:2]
    scale = min(h, w) / 256.0
    threshold = THRESHOLD_AT_256 * scale
    stride = frame_stride(fps)
    out = {"method": "DIS optical flow (OpenCV), top 5% magnitude per frame pair; approximates VBench dynamic degree",
           "fps": float(fps) if fps else None, "frame_stride": stride,
           "threshold_px": threshold, "pair_magnitudes_px": [], "moving_pairs": None, "pairs_needed": None,
           "dynamic": None, "mean_motion_at_256": None, "reason": ""}
    frames = list(frames)[::stride]
    if len(frames) < 2:
        out["reason"] = ("one frame: motion needs at least two" if stride == 1 else
                         f"one frame at about {VBENCH_FPS:g} fps (every {stride}th of {fps:g} fps): motion needs "
                         "at least two")
        return out
    mags = pair_magnitudes(frames)
    needed = max(1, int(round(4 * len(frames) / 16.0)))
    moving = sum(m > threshold for m in mags)
    out.update(pair_magnitudes_px=mags, moving_pairs=int(moving), pairs_needed=needed, dynamic=bool(moving >= needed),
               mean_motion_at_256=float(np.mean(mags) / scale))
    return out
