"""A steady left-to-right identity assignment of the people found in each frame of a video.

Each frame gives candidates (x, y, size): faces from the face stack, or blobs of a person mask. The people
are numbered from left to right in the first frame that shows all of them; from there, forwards and
backwards in time, each frame's candidates go to the people whose last known positions are nearest (the
assignment with the least total distance), so a person keeps their number when the two walk past each
other, and a missed detection does not swap them. Each person's positions then become a steady track
(gaps filled from neighbouring frames, smoothed over time: :mod:`..face_detail.track`).
"""
from __future__ import annotations

import itertools
import math

from ..face_detail.track import build_track
from .errors import RegionError


def _nearest_assignment(candidates: list, last: list) -> dict:
    """person index -> candidate, with the least total distance to the people's last positions."""
    people = [p for p, centre in enumerate(last) if centre is not None]
    best, best_cost = {}, math.inf
    count = min(len(candidates), len(people))
    for chosen in itertools.permutations(people, count):
        for picked in itertools.permutations(range(len(candidates)), count):
            cost = sum(math.dist(candidates[c][:2], last[p]) for p, c in zip(chosen, picked))
            if cost < best_cost:
                best, best_cost = {p: candidates[c] for p, c in zip(chosen, picked)}, cost
    return best


def _follow(candidates: list, start: int, frames, assigned: list, people: int) -> None:
    last = [assigned[start][p][:2] for p in range(people)]
    for f in frames:
        for person, found in _nearest_assignment(candidates[f], last).items():
            assigned[f][person] = found
            last[person] = found[:2]


def assign_detections(candidates: list, people: int = 2) -> list:
    """Per frame, per person (numbered from left to right), the candidate (x, y, size) that is theirs, or None.

    In each frame only the ``people`` largest candidates count. Raises RegionError when no frame shows
    all the people."""
    if people < 1:
        raise RegionError(f"people must be at least 1 (got {people}).")
    frames = len(candidates)
    largest = [sorted(c, key=lambda item: -item[2])[:people] for c in candidates]
    complete = [f for f in range(frames) if len(largest[f]) == people]
    if not complete:
        most = max((len(c) for c in largest), default=0)
        raise RegionError(f"no frame shows all {people} people (at most {most} found in one frame of {frames}); "
                          "use frames where every person is visible, check the face_analysis or person_mask "
                          "input, or use the halves/box region nodes.")
    start = complete[0]
    assigned = [[None] * people for _ in range(frames)]
    assigned[start] = sorted(largest[start], key=lambda item: item[0])
    _follow(largest, start, range(start + 1, frames), assigned, people)
    _follow(largest, start, range(start - 1, -1, -1), assigned, people)
    return assigned


def person_boxes(assigned: list, person: int):
    """``frame index -> box (x1, y1, x2, y2) or None`` of one person of :func:`assign_detections`."""
    def detect(f):
        found = assigned[f][person]
        if found is None:
            return None
        x, y, size = found
        return (x - size / 2, y - size / 2, x + size / 2, y + size / 2)

    return detect


def assign_people(candidates: list, people: int = 2, smoothing: float = 2.0, max_gap: int = 4) -> list:
    """One steady track per person, numbered from left to right, from per-frame lists of (x, y, size)."""
    assigned = assign_detections(candidates, people)
    return [build_track(len(candidates), person_boxes(assigned, p), smoothing=smoothing, max_gap=max_gap)
            for p in range(people)]
