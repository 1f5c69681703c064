"""The face stack: detector + recogniser, from our loader or another pack's.

The FACEANALYSIS object travelling between nodes is an insightface
``FaceAnalysis`` (PuLID, InstantID and IPAdapter FaceID loaders make one) or our
:func:`build_face_analysis` result, a ``FaceAnalysis`` subclass that loads only
the detector and the recogniser, never downloads, and uses our provider choice.
Either way it works with those packs' nodes and with ours.

:func:`load_face_stack` turns it into a :class:`FaceStack`: the SCRFD detector
(``models['detection']``) and the recogniser file (``models['recognition']
.model_file``), converted to a frozen PyTorch encoder on first use.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .detector import DEFAULT_DET_SIZES, DET_THRESH, FaceDetector
from .errors import FaceStackError

_fa_class = None


def _face_analysis_class():
    """``FaceAnalysis`` subclass, defined lazily so importing us never imports insightface."""
    global _fa_class
    if _fa_class is None:
        from insightface.app import FaceAnalysis

        class PersonalVideoFaceAnalysis(FaceAnalysis):
            """insightface FaceAnalysis made from files we located; detection and recognition only."""

            def __init__(self, files, provider: str = "auto"):  # noqa: D401  (no super(): it downloads)
                from insightface.model_zoo.arcface_onnx import ArcFaceONNX

                from .providers import create_session

                detector = FaceDetector.from_file(files.detector, provider)
                session = create_session(files.recognizer, provider)
                try:
                    recognizer = ArcFaceONNX(model_file=files.recognizer, session=session)
                except Exception as exc:
                    raise FaceStackError(
                        f"{files.recognizer} is not a face recognition model insightface can use "
                        f"({type(exc).__name__}: {exc}). Copy the model pack again."
                    ) from exc
                self.models = {"detection": detector.model, "recognition": recognizer}
                self.det_model = detector.model
                self.model_dir = files.folder
                self.pv_files = files
                self.pv_provider = provider
                self.pv_providers_active = session.get_providers()
                self.prepare(0, det_thresh=DET_THRESH, det_size=(DEFAULT_DET_SIZES[0],) * 2)

            def __repr__(self):
                return (f"PersonalVideoFaceAnalysis({self.pv_files.name} at {self.model_dir}, "
                        f"providers={self.pv_providers_active})")

        _fa_class = PersonalVideoFaceAnalysis
    return _fa_class


def build_face_analysis(pack: str = "antelopev2", provider: str = "auto"):
    """Find ``pack`` in ComfyUI's insightface folders and load it (no download)."""
    from .model_paths import find_model_pack

    files = find_model_pack(pack)
    return _face_analysis_class()(files, provider)


class OnnxRecognizer:
    """Embeddings from insightface's own recognition model object (onnxruntime)."""

    def __init__(self, model):
        self.model = model
        self.input_size = int(model.input_size[0])
        self.source = getattr(model, "model_file", "")

    @torch.no_grad()
    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        x = (crops.detach().float().cpu() * 255.0).numpy().astype(np.float32)
        out = torch.from_numpy(np.asarray(self.model.forward(x), dtype=np.float32))
        return torch.nn.functional.normalize(out, dim=-1)


class FaceStack:
    """Detector + recogniser of one FACEANALYSIS object."""

    def __init__(self, detector: FaceDetector, recognizer_model=None, face_analysis=None):
        self.detector = detector
        self.recognizer_model = recognizer_model
        self.face_analysis = face_analysis
        self._encoders: dict = {}

    @property
    def recognizer_path(self) -> str:
        path = getattr(self.recognizer_model, "model_file", None)
        if not path:
            raise FaceStackError(
                "the FACEANALYSIS input has no recognition model (it was loaded with detection only). "
                "Use 'Load Face Analysis (PersonalVideo)' or a loader that includes glintr100.onnx."
            )
        return path

    def encoder(self, device=None, cache_dir: str | None = None, recognizer_path: str | None = None):
        """The frozen PyTorch encoder (converted/cached on first use), on ``device``.

        The copy kept on this stack (and so on the FACEANALYSIS object it is
        cached on) lives on the CPU: without a ``device`` the encoder is moved
        back there, so a caller that used it on the GPU (the trainer) gives the
        GPU memory back by asking for it again when done.

        ``recognizer_path`` overrides the FACEANALYSIS recogniser, e.g. an
        arcface_torch ``.pth`` backbone.
        """
        from .encoder import load_recognizer

        path = recognizer_path or self.recognizer_path
        if path not in self._encoders:
            if cache_dir is None and path.lower().endswith(".onnx"):
                from .model_paths import encoder_cache_dir

                cache_dir = encoder_cache_dir()
            self._encoders[path] = load_recognizer(path, cache_dir)
        enc = self._encoders[path]
        with torch.inference_mode(False):  # .to() under inference mode would make inference tensors
            enc.to("cpu" if device is None else device)
        return enc

    def onnx_recognizer(self) -> OnnxRecognizer:
        if self.recognizer_model is None:
            self.recognizer_path  # raises the clear error
        return OnnxRecognizer(self.recognizer_model)


def load_face_stack(face_analysis, det_sizes=DEFAULT_DET_SIZES) -> FaceStack:
    """A :class:`FaceStack` from a FACEANALYSIS object (ours, PuLID's, InstantID's...)."""
    if isinstance(face_analysis, FaceStack):
        return face_analysis
    cached = getattr(face_analysis, "_pv_face_stack", None)
    if isinstance(cached, FaceStack):
        return cached
    models = getattr(face_analysis, "models", None)
    if not isinstance(models, dict) or "detection" not in models:
        raise FaceStackError(
            f"the FACEANALYSIS input ({type(face_analysis).__name__}) has no detection model. Connect "
            "'Load Face Analysis (PersonalVideo)' or an insightface FaceAnalysis from PuLID/InstantID loaders."
        )
    det = models["detection"]
    stack = FaceStack(FaceDetector(det, det_sizes, source=getattr(det, "model_file", "") or ""),
                      models.get("recognition"), face_analysis)
    try:
        face_analysis._pv_face_stack = stack
    except Exception:
        pass
    return stack


def describe(stack: FaceStack) -> str:
    rec = getattr(stack.recognizer_model, "model_file", None)
    return (f"detector {os.path.basename(stack.detector.source) or '?'}, "
            f"recogniser {os.path.basename(rec) if rec else 'none'}")
