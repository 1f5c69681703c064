"""Per-frame face boxes from the pack's face stack (the largest face of each frame)."""
from __future__ import annotations


def stack_detector(face_analysis):
    """``detect(frame) -> box or None`` over the FACEANALYSIS input's detector (ours, PuLID's, InstantID's)."""
    from ..training.face.analysis import load_face_stack
    from ..training.face.detector import to_bgr_uint8

    detector = load_face_stack(face_analysis).detector

    def detect(frame):
        face = detector.detect_largest(to_bgr_uint8(frame, "images"))
        return None if face is None else face.bbox

    return detect


def frame_detector(frames, detect):
    """``index -> box or None`` over IMAGE ``frames`` with ``detect(frame)``, stopping when the user cancels."""
    def by_index(i):
        try:
            import comfy.model_management as mm
        except ImportError:  # outside ComfyUI
            mm = None
        if mm is not None:
            mm.throw_exception_if_processing_interrupted()
        return detect(frames[i])

    return by_index


def stack_all_faces(face_analysis):
    """``detect_all(frame) -> [box, ...]``: every face the FACEANALYSIS input's detector finds, largest first."""
    from ..training.face.analysis import load_face_stack
    from ..training.face.detector import to_bgr_uint8

    detector = load_face_stack(face_analysis).detector

    def detect_all(frame):
        return [face.bbox for face in detector.detect_all(to_bgr_uint8(frame, "images"))]

    return detect_all


def person_detector(frames, detect_all, person: int, people: int = 2):
    """``index -> box or None``: the face of one person (numbered from left to right, steady over the frames:
    :mod:`..regions.assign`) in IMAGE ``frames``, from ``detect_all(frame)``."""
    from ..regions.assign import assign_detections, person_boxes
    from ..regions.person_masks import face_candidates

    every_face = frame_detector(frames, detect_all)
    candidates = face_candidates([every_face(i) for i in range(frames.shape[0])])
    return person_boxes(assign_detections(candidates, people), person)
