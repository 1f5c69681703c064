"""The independent score of a training sample, for the trainer's adapter metadata and node output.

Never fails the training: a missing optional dependency or a sample without a face gives a dict saying why.
"""
from __future__ import annotations

from .errors import EvaluationError
from .evaluate import evaluate_video
from .recognisers import DLIB


def score_training_sample(frames, references, recogniser: str = DLIB, face_analysis=None) -> dict:
    """A compact, JSON-ready summary: ``verdict``, ``same_person`` and ``identity_match`` (0-100, strangers low;
    None without a face), ``face_similarity`` (the raw mean cosine, or None), frame counts, the dlib distance
    (dlib recogniser), the motion verdict, and ``skipped`` (a reason) when nothing could be scored."""
    try:
        report = evaluate_video(frames, references, recogniser=recogniser, face_analysis=face_analysis)
    except EvaluationError as exc:
        return {"recogniser": recogniser, "identity_match": None, "face_similarity": None, "skipped": str(exc)}
    ident, motion = report["identity"], report["motion"]
    out = {"verdict": ident["verdict"], "same_person": ident["same_person"], "identity_match": ident["identity_match"],
           "recogniser": ident["recogniser"], "detector": ident["detector"], "face_similarity": ident["mean"],
           "frames": len(ident["per_frame"]), "frames_without_face": len(ident["frames_without_face"]),
           "dynamic": motion["dynamic"], "mean_motion_at_256": motion["mean_motion_at_256"],
           "protocol": report["format"]}
    if "dlib_distance" in ident:
        out.update(dlib_distance=ident["dlib_distance"], dlib_same_person=ident["dlib_same_person"])
    if ident["mean"] is None:
        out["skipped"] = "no face found in any frame of the sample"
    return out
