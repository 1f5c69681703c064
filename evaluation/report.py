"""The report of a scoring run: a JSON-ready dict, a text summary, and atomic file writing."""
from __future__ import annotations

import json

from ..sia.atomic_file import atomic_write_bytes
from .consistency import identity_consistency
from .protocol import COMPARABILITY, CONSISTENCY_NOTE, MIN_FACE_PX, MOTION_NOTE
from .scoring import DLIB_SAME_PERSON
from .verdict import headline, match, same_person, threshold_for, verdict

FORMAT = "personalvideo-identity-score-v2"   # v2: verdict, identity_match and threshold lead the identity part


def build_report(score, motion: dict) -> dict:
    """``score``: scoring.IdentityScore; ``motion``: motion.motion_score's dict."""
    threshold = threshold_for(score.recogniser_kind)
    judged = score.mean_distance if threshold.metric == "dlib_distance" else score.mean
    per_frame = [{"frame": f.index, "identity_match": match(_metric(f, threshold), threshold),
                  "similarity": f.similarity, "face_px": f.face_px,
                  **({"dlib_distance": f.distance} if f.distance is not None else {}),
                  **({"reason": f.reason} if f.reason else {})} for f in score.frames]
    identity = {
        "verdict": verdict(judged, threshold), "same_person": same_person(judged, threshold),
        "identity_match": match(judged, threshold),
        "threshold": {"metric": threshold.metric, "value": threshold.value,
                      "same_person_when": threshold.describe(), "source": threshold.source,
                      "identity_match": "100 / (1 + exp(-m / 0.1)), m: how far the score lies on the same-person "
                                        "side of the threshold (50 at the threshold; strangers score low)"},
        "recogniser": score.recogniser, "recogniser_kind": score.recogniser_kind, "detector": score.detector,
        "mean": score.mean, "mean_percent": None if score.mean is None else round(100.0 * score.mean, 2),
        "frame_count": score.frame_count, "frames_scored": len(score.scored),
        "frames_without_face": score.without_face, "per_frame": per_frame,
        "references_used": score.references_used,
        "references_skipped": [{"reference": i, "reason": r} for i, r in score.references_skipped],
        "comparable_with": COMPARABILITY[score.recogniser_kind],
    }
    if score.recogniser_kind == "dlib":
        dist = score.mean_distance
        identity.update(dlib_distance=dist, dlib_same_person=None if dist is None else dist < DLIB_SAME_PERSON,
                        dlib_same_person_frames=sum(1 for f in score.scored if f.distance < DLIB_SAME_PERSON))
    return {"format": FORMAT,
            "protocol": ("frames sampled uniformly; largest face per frame (faces under "
                         f"{MIN_FACE_PX} px count as none); cosine similarity to each reference clipped at 0, "
                         "averaged over the references; mean over the frames with a face"),
            "identity": identity,
            "consistency": {**identity_consistency(score, motion.get("frame_stride", 1)), "note": CONSISTENCY_NOTE},
            "motion": {**motion, "note": MOTION_NOTE}}


def _metric(frame, threshold):
    return frame.distance if threshold.metric == "dlib_distance" else frame.similarity


def _f(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report_text(report: dict) -> str:
    ident, cons, mot = report["identity"], report["consistency"], report["motion"]
    frames = f"{ident['frames_scored']} of {len(ident['per_frame'])} scored frame(s)"
    lines = [f"Identity: {headline(ident['verdict'], ident['identity_match'])} ({ident['recogniser']}, "
             f"detector {ident['detector']})"]
    if ident["mean"] is None:
        lines.append(f"  no face found in any of the {len(ident['per_frame'])} scored frame(s): no similarity")
    elif "dlib_distance" in ident:
        lines.append(f"  dlib distance {_f(ident['dlib_distance'])} to the references over {frames}; the same person "
                     f"below {DLIB_SAME_PERSON} (dlib's threshold, identity match 50); "
                     f"{ident['dlib_same_person_frames']} frame(s) under it")
    else:
        lines.append(f"  face similarity {_f(ident['mean'])} ({ident['mean_percent']:.2f} x100) over {frames}; the "
                     f"same person at or above {ident['threshold']['value']} (identity match 50)")
    if ident["frames_without_face"]:
        lines.append(f"  no face in frame(s) {', '.join(map(str, ident['frames_without_face']))}")
    for skipped in ident["references_skipped"]:
        lines.append(f"  reference {skipped['reference']} not used: {skipped['reason']}")
    lines.append("  identity match per frame: " + ", ".join(f"{f['frame']}:{_f(f['identity_match'], 0)}"
                                                            for f in ident["per_frame"]))
    lines.append(f"  comparable with: {ident['comparable_with']}")
    lines.append(f"Consistency: similarity spread (std) {_f(cons['similarity_std'])}, min {_f(cons['similarity_min'])}, "
                 f"max {_f(cons['similarity_max'])}; consecutive-frame embedding cosine "
                 f"{_f(cons['consecutive_embedding_cosine'])}")
    if mot["dynamic"] is None:
        lines.append(f"Motion: {mot['reason']}")
    else:
        lines.append(f"Motion (approximate VBench dynamic degree): {'dynamic' if mot['dynamic'] else 'static'}, "
                     f"{mot['moving_pairs']} of {len(mot['pair_magnitudes_px'])} frame pairs above "
                     f"{mot['threshold_px']:.2f} px (needs {mot['pairs_needed']}); mean motion "
                     f"{_f(mot['mean_motion_at_256'], 2)} px at 256 px")
    lines.append("  " + _pace(mot))
    return "\n".join(lines)


def _pace(mot: dict) -> str:
    """How the frame-to-frame figures were paced (motion pairs and the consecutive-frame cosine)."""
    if not mot.get("fps"):
        return "frame rate not given: frame pairs are consecutive frames as given"
    stride = mot.get("frame_stride") or 1
    every = "every frame" if stride == 1 else f"every {stride}th frame"
    return (f"{mot['fps']:g} fps: frame pairs and the consecutive-frame cosine use {every} (about "
            f"{mot['fps'] / stride:g} per second, as VBench samples)")


def write_atomic(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` with the pack's atomic writer: whole or not at all."""
    return atomic_write_bytes(path, data)


def report_json(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"
