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
                   max_frames: int = 0, fps: float | None = None) -> dict:
    """``frames``: one video (IMAGE tensor or RGB arrays of one size); ``references``: photos (any sizes).

    ``fps``: the video's frame rate (8 for the AnimateDiff workflows, 16 for Wan 2.1 and Wan 2.2 A14B, 24 for Wan
    2.2 TI2V 5B; None: unknown): the frame-to-frame figures (motion, consecutive-frame cosine) are then taken
    about 1/8 s apart, as VBench does, so that videos at different rates compare.

    ``recogniser``: ``dlib``, ``training`` (the FACEANALYSIS recogniser) or an ArcFace-contract ``.onnx`` path;
    ``detector``: see detectors.DETECTORS.
    """
    video = video_frames(frames)
    refs = image_list(references, "references")
    rec = make_recogniser(recogniser, face_analysis)
    det = make_detector(detector, face_analysis)
    return build_report(score_identity(video, refs, rec, det, max_frames), motion_score(video, fps or None))
