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


def region_detector(frames, detect_all, region):
    """``index -> box or None``: per frame of IMAGE ``frames``, the largest face ``detect_all(frame)`` finds whose
    centre lies inside MASK ``region`` (one mask for all frames or one per frame, any size: positions are
    scaled; inside = at least 0.5), so one pass can follow one person of two."""
    from .errors import FaceDetailError

    masks = region if region.ndim == 3 else region.unsqueeze(0)
    count = int(frames.shape[0])
    if masks.shape[0] not in (1, count):
        raise FaceDetailError(f"the region mask has {masks.shape[0]} frames but images has {count}; give one "
                              "mask for all frames or one per frame of the same video.")
    every_face = frame_detector(frames, detect_all)
    scale_y, scale_x = masks.shape[1] / frames.shape[1], masks.shape[2] / frames.shape[2]

    def detect(i):
        mask = masks[i if masks.shape[0] > 1 else 0]
        for box in every_face(i):            # largest first
            x = min(int((box[0] + box[2]) / 2 * scale_x), mask.shape[1] - 1)
            y = min(int((box[1] + box[3]) / 2 * scale_y), mask.shape[0] - 1)
            if x >= 0 and y >= 0 and float(mask[y, x]) >= 0.5:
                return box
        return None

    return detect
