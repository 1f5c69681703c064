"""Per-frame identity similarity of a video's frames against reference photos (see protocol.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import EvaluationError
from .protocol import MIN_FACE_PX, clipped_cosine, sample_indices
from .verdict import DLIB

DLIB_SAME_PERSON = DLIB.value  # dlib's own threshold on the Euclidean distance of its descriptors


@dataclass
class FrameScore:
    index: int                      # frame index in the video
    similarity: float | None        # mean clipped cosine to the references; None: no face
    distance: float | None = None   # dlib recogniser: mean Euclidean distance to the references
    face_px: float | None = None    # shorter side of the face box
    reason: str = ""                # why there is no score
    embedding: np.ndarray | None = field(default=None, repr=False)


@dataclass
class IdentityScore:
    frames: list                    # FrameScore per sampled frame
    frame_count: int                # frames in the video
    recogniser: str
    recogniser_kind: str
    detector: str
    references_used: list
    references_skipped: list        # (index, reason)

    @property
    def scored(self) -> list:
        return [f for f in self.frames if f.similarity is not None]

    @property
    def mean(self) -> float | None:
        vals = [f.similarity for f in self.scored]
        return float(np.mean(vals)) if vals else None

    @property
    def mean_distance(self) -> float | None:
        vals = [f.distance for f in self.scored if f.distance is not None]
        return float(np.mean(vals)) if vals else None

    @property
    def without_face(self) -> list:
        return [f.index for f in self.frames if f.similarity is None]


def _cosines(embedding: np.ndarray, refs: np.ndarray) -> np.ndarray:
    e = embedding / max(np.linalg.norm(embedding), 1e-12)
    r = refs / np.maximum(np.linalg.norm(refs, axis=1, keepdims=True), 1e-12)
    return r @ e


def largest_usable_face(detector, rgb: np.ndarray):
    """(face, reason): the largest face, or None and why not."""
    faces = detector.detect(rgb)
    if not faces:
        return None, "no face found"
    if faces[0].size < MIN_FACE_PX:
        return None, f"face of {faces[0].size:.0f} px is smaller than {MIN_FACE_PX} px"
    return faces[0], ""


def reference_embeddings(detector, recogniser, references: list) -> tuple:
    """([M, D] embeddings, used indices, skipped (index, reason)); an error when no reference has a face."""
    embeddings, used, skipped = [], [], []
    for i, rgb in enumerate(references):
        face, reason = largest_usable_face(detector, rgb)
        if face is None:
            skipped.append((i, reason))
            continue
        embeddings.append(recogniser.embed(rgb, face))
        used.append(i)
    if not embeddings:
        detail = "; ".join(f"reference {i}: {r}" for i, r in skipped)
        raise EvaluationError(f"no reference image has a usable face ({detail}): use photos with one clearly "
                              f"visible face, frontal or three-quarter, at least {MIN_FACE_PX} px (better 100 px "
                              "or more) wide")
    return np.stack(embeddings), used, skipped


def score_identity(frames: list, references: list, recogniser, detector, max_frames: int = 0) -> IdentityScore:
    """Score ``frames`` (RGB uint8 arrays of one video) against ``references`` (RGB uint8 photos)."""
    refs, used, skipped = reference_embeddings(detector, recogniser, references)
    scores = []
    for index in sample_indices(len(frames), max_frames):
        rgb = frames[index]
        face, reason = largest_usable_face(detector, rgb)
        if face is None:
            scores.append(FrameScore(index, None, reason=reason))
            continue
        emb = recogniser.embed(rgb, face)
        if emb.shape[-1] != refs.shape[-1]:
            raise EvaluationError(f"internal: frame embedding has {emb.shape[-1]} dimensions, references {refs.shape[-1]}")
        sim = float(np.mean([clipped_cosine(c) for c in _cosines(emb, refs)]))
        distance = float(np.mean(np.linalg.norm(refs - emb, axis=1))) if recogniser.kind == "dlib" else None
        scores.append(FrameScore(index, sim, distance, face.size, embedding=emb))
    return IdentityScore(scores, len(frames), recogniser.name, recogniser.kind, detector.name, used, skipped)
