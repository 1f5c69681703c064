"""The headline of a score: a verdict (the same person or not) and an identity match from 0 to 100 on which
strangers score low, whatever the recogniser.

A raw cosine reads differently per recogniser: dlib's descriptors lie in a narrow cone (strangers score
0.75-0.85, the same person 0.9 and more), ArcFace's spread out (strangers near 0).  Each recogniser has its
own same-person threshold, and the match says how far a score lies from it:

- dlib's ResNet: Euclidean distance of the descriptors below 0.6 is the same person (dlib's own threshold);
- ArcFace-contract recognisers (the training one, antelopev2's glintr100; buffalo_l's w600k_r50; other .onnx
  files): cosine 0.28 and above is the same person, the cut insightface's own recognition demo uses for its
  ArcFace models (below 0.2 not the same person, 0.2-0.28 likely).

``match = 100 / (1 + exp(-margin / 0.1))``, where ``margin`` is how far the score lies on the same-person side
of the threshold (distance: threshold - distance; cosine: cosine - threshold).  So the threshold is 50, 0.1
inside it about 73 and 0.2 inside about 88; 0.1 outside about 27, 0.2 outside about 12.  With dlib on real
photos (tests/test_evaluation.py) another person scores about 10 and the same person 80-90.  It is a scale,
not a probability: it was not fitted to any data set.
"""
from __future__ import annotations

import math
from typing import NamedTuple

WIDTH = 0.1


class Threshold(NamedTuple):
    metric: str            # the report field the verdict is read from
    value: float
    lower_is_same: bool    # a distance (True) or a similarity (False)
    source: str

    def margin(self, score: float) -> float:
        return self.value - score if self.lower_is_same else score - self.value

    def describe(self) -> str:
        return f"{self.metric} {'below' if self.lower_is_same else 'at or above'} {self.value:g}"


DLIB = Threshold("dlib_distance", 0.6, True, "dlib's own threshold for its ResNet descriptors")
ARCFACE = Threshold("similarity", 0.28, False, "the cut of insightface's recognition demo for its ArcFace models")
SAME, NOT_SAME, NO_FACE = "the same person", "not the same person", "no face found"


def threshold_for(recogniser_kind: str) -> Threshold:
    return DLIB if recogniser_kind == "dlib" else ARCFACE


def match(score: float | None, threshold: Threshold) -> float | None:
    """The identity match (0..100) of a score, None without one."""
    if score is None or not math.isfinite(score):
        return None
    return 100.0 / (1.0 + math.exp(-threshold.margin(float(score)) / WIDTH))


def same_person(score: float | None, threshold: Threshold) -> bool | None:
    if score is None:
        return None
    margin = threshold.margin(float(score))
    return margin > 0 if threshold.lower_is_same else margin >= 0


def verdict(score: float | None, threshold: Threshold) -> str:
    same = same_person(score, threshold)
    return NO_FACE if same is None else (SAME if same else NOT_SAME)


def headline(verdict_text: str, match_value: float | None) -> str:
    """``NOT the same person: identity match 9/100`` (the words an artist reads first)."""
    if match_value is None:
        return f"{verdict_text}: no identity match"
    shown = verdict_text.replace("not the same", "NOT the same")
    return f"{shown}: identity match {match_value:.0f}/100"
