"""Face detection with insightface's SCRFD post-processing.

The detector is insightface's own SCRFD class (anchor decoding, score threshold,
NMS) over an onnxruntime session, or the ``models['detection']`` object of a
``FaceAnalysis`` built by PuLID/InstantID/IPAdapter loaders.  We only drive it:
letterboxing is SCRFD's, we pick the largest face and retry at smaller detector
sizes when nothing is found (a face that fills the picture is often missed at
640 and found at 320). The identity loss starts with the smallest size that holds
its frame (:func:`sizes_for`), so a small frame is not upscaled to 640 first.

Images given to :meth:`FaceDetector.detect` are numpy uint8 [H, W, 3] in BGR order,
as insightface expects; :func:`to_bgr_uint8` converts ComfyUI IMAGE tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import FaceStackError

DEFAULT_DET_SIZES = (640, 480, 320)
DET_THRESH = 0.5
SCRFD_OUTPUTS = (6, 9, 10, 15)  # output counts of SCRFD's ONNX exports (with keypoints: 9 and 15)
MIN_FACE_PX = 20  # shorter side of the box; smaller faces give blurry 112px crops


@dataclass
class Face:
    bbox: np.ndarray  # [4] x1, y1, x2, y2 in image pixels
    score: float
    kps: np.ndarray  # [5, 2] eyes, nose, mouth corners in image pixels
    det_size: int

    @property
    def size(self) -> float:
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))


def to_rgb01(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """One image [H, W, C] (C = 1, 3 or 4) or [H, W] to RGB [H, W, 3] float 0..1.

    Grayscale is repeated to three channels; RGBA is composited over mid grey
    (transparent pixels hold arbitrary colours).
    """
    if not torch.is_tensor(image):
        raise FaceStackError(f"{name} must be an IMAGE tensor, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise FaceStackError(
            f"{name} must be [H, W, C] with C = 1 (grey), 3 (RGB) or 4 (RGBA); got shape {tuple(image.shape)}"
        )
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise FaceStackError(f"{name} is only {image.shape[1]}x{image.shape[0]} pixels: too small to hold a face")
    x = image.detach().float()
    if not torch.isfinite(x).all():
        raise FaceStackError(f"{name} contains NaN or infinite values")
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, 3)
    elif x.shape[-1] == 4:
        alpha = x[..., 3:].clamp(0, 1)
        x = x[..., :3] * alpha + 0.5 * (1 - alpha)
    return x.clamp(0, 1)


def to_bgr_uint8(image: torch.Tensor, name: str = "image") -> np.ndarray:
    rgb = to_rgb01(image, name)
    return np.ascontiguousarray((rgb * 255.0).round().to(torch.uint8).cpu().numpy()[..., ::-1])


def sizes_for(height: int, width: int, det_sizes=DEFAULT_DET_SIZES) -> tuple:
    """The detector sizes to try on a ``height`` x ``width`` picture, in order: first the smallest that holds the
    picture without shrinking it, then the others as given; a picture larger than every size gets them as given.

    SCRFD letterboxes the picture into a square of the size, so a small frame is upscaled no more than it needs
    (its cost grows with the square of the size: a 64 px frame at 320 costs a quarter of 640, and a face that fills
    the frame is found more surely near its own scale); a 512 px frame still goes to 640 first, as before."""
    sizes = tuple(int(s) for s in det_sizes)
    holding = [s for s in sizes if s >= max(height, width)]
    if not holding:
        return sizes
    first = min(holding)
    return (first,) + tuple(s for s in sizes if s != first)


class FaceDetector:
    """Largest-face detection with retries at smaller detector sizes."""

    def __init__(self, model, det_sizes=DEFAULT_DET_SIZES, source: str = ""):
        if not hasattr(model, "detect"):
            raise FaceStackError(
                f"the detection model {type(model).__name__} has no detect(): expected insightface's SCRFD "
                "(scrfd_10g_bnkps.onnx of antelopev2 or det_10g.onnx of buffalo_l)"
            )
        if getattr(model, "use_kps", True) is False:
            raise FaceStackError(
                f"the detector {source or getattr(model, 'model_file', '')} gives no facial keypoints; "
                "alignment needs the 5-keypoint SCRFD of antelopev2 (scrfd_10g_bnkps.onnx) or buffalo_l (det_10g.onnx)"
            )
        self.model = model
        self.source = source or getattr(model, "model_file", "") or ""
        shape = getattr(model, "input_shape", None)
        fixed = shape is not None and len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int)
        if fixed:  # an ONNX file with a fixed input size: no retries possible
            self.det_sizes = (int(shape[3]),)
        else:
            self.det_sizes = tuple(int(s) for s in det_sizes)

    @classmethod
    def from_file(cls, path: str, provider: str = "auto", det_thresh: float = DET_THRESH,
                  det_sizes=DEFAULT_DET_SIZES) -> "FaceDetector":
        from insightface.model_zoo.scrfd import SCRFD

        from .providers import create_session

        session = create_session(path, provider)
        outputs = len(session.get_outputs())
        if outputs not in SCRFD_OUTPUTS:
            raise FaceStackError(
                f"{path} is not an SCRFD face detector ({outputs} outputs; SCRFD has 6, 9, 10 or 15)"
            )
        model = SCRFD(model_file=path, session=session)
        model.prepare(0, det_thresh=det_thresh, input_size=(det_sizes[0], det_sizes[0]))
        return cls(model, det_sizes, source=path)

    def detect_all(self, bgr: np.ndarray, det_sizes=None) -> list:
        """All faces at the first detector size that finds any, largest first."""
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise FaceStackError(f"detector input must be uint8 [H, W, 3] BGR, got {bgr.dtype} {bgr.shape}")
        sizes = self.det_sizes if det_sizes is None or len(self.det_sizes) == 1 else tuple(det_sizes)
        for size in sizes:
            bboxes, kpss = self.model.detect(bgr, input_size=(size, size), max_num=0)
            if bboxes is None or len(bboxes) == 0:
                continue
            if kpss is None:
                raise FaceStackError(f"the detector {self.source} returned no keypoints")
            faces = [Face(np.asarray(b[:4], np.float64), float(b[4]), np.asarray(k, np.float64).reshape(5, 2), size)
                     for b, k in zip(bboxes, kpss)]
            faces.sort(key=lambda f: f.area, reverse=True)
            return faces
        return []

    def detect_largest(self, bgr: np.ndarray, det_sizes=None) -> Face | None:
        faces = self.detect_all(bgr, det_sizes)
        return faces[0] if faces else None
