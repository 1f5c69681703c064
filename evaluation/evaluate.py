"""One scoring run: frames + references -> report dict (identity, consistency, motion), the same for the node,
the command line, the trainer and the main job."""
from __future__ import annotations

from .detectors import make_detector
from .frames import image_list, video_frames
from .motion import motion_score
from .recognisers import DLIB, make_recogniser
from .report import build_report
from .scoring import score_identity


def evaluate_video(frames, references, recogniser: str = DLIB, detector: str = "auto", face_analysis=None,
                   max_frames: int = 0) -> dict:
    """``frames``: one video (IMAGE tensor or RGB arrays of one size); ``references``: photos (any sizes).

    ``recogniser``: ``dlib``, ``training`` (the FACEANALYSIS recogniser) or an ArcFace-contract ``.onnx`` path;
    ``detector``: see detectors.DETECTORS.
    """
    video = video_frames(frames)
    refs = image_list(references, "references")
    rec = make_recogniser(recogniser, face_analysis)
    det = make_detector(detector, face_analysis)
    return build_report(score_identity(video, refs, rec, det, max_frames), motion_score(video))
