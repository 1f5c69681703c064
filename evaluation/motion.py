"""A motion score from optical flow, approximating VBench's dynamic degree (see protocol.MOTION_NOTE).

OpenCV's DIS optical flow (no weights) between consecutive frames; per pair, the mean of the largest 5% flow
magnitudes, in pixels.  VBench (with RAFT) calls a pair moving above 6 px x (shorter side / 256) and a video
dynamic when at least round(4 x frames / 16) pairs move.
"""
from __future__ import annotations

import numpy as np

TOP_FRACTION = 0.05
THRESHOLD_AT_256 = 6.0


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


def motion_score(frames: list) -> dict:
    """Per-pair magnitudes, the threshold, the moving pairs, the dynamic verdict and a scale-free mean.

    ``mean_motion_at_256`` is the mean per-pair magnitude rescaled to a 256 px shorter side (comparable across
    sizes).  With one frame nothing is computed and ``reason`` says so.
    """
    h, w = frames[0].shape[:2]
    scale = min(h, w) / 256.0
    threshold = THRESHOLD_AT_256 * scale
    out = {"method": "DIS optical flow (OpenCV), top 5% magnitude per frame pair; approximates VBench dynamic degree",
           "threshold_px": threshold, "pair_magnitudes_px": [], "moving_pairs": None, "pairs_needed": None,
           "dynamic": None, "mean_motion_at_256": None, "reason": ""}
    if len(frames) < 2:
        out["reason"] = "one frame: motion needs at least two"
        return out
    mags = pair_magnitudes(frames)
    needed = max(1, int(round(4 * len(frames) / 16.0)))
    moving = sum(m > threshold for m in mags)
    out.update(pair_magnitudes_px=mags, moving_pairs=int(moving), pairs_needed=needed, dynamic=bool(moving >= needed),
               mean_motion_at_256=float(np.mean(mags) / scale))
    return out
