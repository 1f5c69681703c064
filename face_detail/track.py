"""A face track that is steady over time: one box (centre and size) per frame of a video.

Per-frame detections jitter and sometimes fail. The track
- fills a frame without a detection from its neighbours: linearly between the detections around it when
  the gap is at most ``max_gap`` frames long, or holding the nearest detection for up to ``max_gap`` frames
  at the start or end of a run; frames farther from any detection have no face;
- smooths centre and size over time within each run of face frames: a 3-frame median first (a single
  wrong detection does not pull the track), then a Gaussian-weighted local line over ``smoothing`` frames
  (0 = off), which follows steady motion without lagging behind it.

The detector is any callable ``frame index -> box or None`` (box: x1, y1, x2, y2 in pixels), so the track
does not depend on how faces are found.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DETECTED, FILLED, NO_FACE = "detected", "filled", "none"


@dataclass
class FaceTrack:
    centres: np.ndarray  # [F, 2] x, y in pixels (NaN where there is no face)
    sizes: np.ndarray    # [F] side of the face box in pixels (NaN where there is no face)
    states: list         # per frame: DETECTED, FILLED or NO_FACE

    @property
    def frames(self) -> int:
        return len(self.states)

    def has_face(self, i: int) -> bool:
        return self.states[i] != NO_FACE

    def count(self, state: str) -> int:
        return sum(s == state for s in self.states)


def box_centre_size(box) -> tuple:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0, max(x2 - x1, y2 - y1)


def build_track(frames: int, detect, smoothing: float = 2.0, max_gap: int = 4) -> FaceTrack:
    """The track of ``frames`` frames from ``detect(i)`` (a box or None per frame index)."""
    raw = np.full((frames, 3), np.nan)
    for i in range(frames):
        box = detect(i)
        if box is not None:
            raw[i] = box_centre_size(box)
    found = ~np.isnan(raw[:, 0])
    states = [DETECTED if f else NO_FACE for f in found]
    values = raw.copy()
    hits = np.flatnonzero(found)
    for i in np.flatnonzero(~found):
        before, after = hits[hits < i], hits[hits > i]
        p = before[-1] if len(before) else None
        n = after[0] if len(after) else None
        if p is not None and n is not None and n - p - 1 <= max_gap:
            t = (i - p) / (n - p)
            values[i] = (1 - t) * raw[p] + t * raw[n]
        elif p is not None and (n is None or n - p - 1 > max_gap) and i - p <= max_gap:
            values[i] = raw[p]
        elif n is not None and (p is None or n - p - 1 > max_gap) and n - i <= max_gap:
            values[i] = raw[n]
        else:
            continue
        states[i] = FILLED
    for start, stop in _runs([s != NO_FACE for s in states]):
        values[start:stop] = _smooth(values[start:stop], smoothing)
    return FaceTrack(values[:, :2].copy(), values[:, 2].copy(), states)


def _runs(flags) -> list:
    """[(start, stop)] of the runs of True in ``flags``."""
    runs, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """3-frame median, then a Gaussian-weighted local linear fit of ``sigma`` frames, over [n, k] values.

    The local line (rather than a plain Gaussian average) follows steady motion without lag, also at the
    first and last frames of a run."""
    n = values.shape[0]
    if n >= 3:
        med = values.copy()
        med[1:-1] = np.median(np.stack([values[:-2], values[1:-1], values[2:]]), axis=0)
        values = med
    if sigma <= 0 or n < 2:
        return values
    radius = max(1, int(np.ceil(3 * sigma)))
    out = np.empty_like(values)
    for i in range(n):
        idx = np.arange(max(0, i - radius), min(n, i + radius + 1))
        d = (idx - i).astype(np.float64)
        w = np.exp(-0.5 * (d / sigma) ** 2)
        sw, sd, sdd = w.sum(), (w * d).sum(), (w * d * d).sum()
        swy, sdy = (w[:, None] * values[idx]).sum(0), ((w * d)[:, None] * values[idx]).sum(0)
        det = sw * sdd - sd * sd
        out[i] = (sdd * swy - sd * sdy) / det if det > 1e-9 * max(sw * sdd, 1e-12) else swy / sw
    return out
