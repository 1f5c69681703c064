"""The face stack: detector + recogniser, from our loader or another pack's.

The FACEANALYSIS object travelling between nodes is always insightface's own
``FaceAnalysis``, made through its public constructor: by PuLID, InstantID and
IPAdapter FaceID loaders, or by :func:`build_face_analysis`, which points it at
the pack folder we located (an absolute folder: insightface then never
downloads), keeps only detection and recognition, and asks for our provider
choice.  So it works with those packs' nodes and theirs with ours, on every
insightface version whose constructor, ``prepare``, ``get``, ``models`` and
``det_model`` keep their meaning (0.7.3 and 2.x are tested).

:func:`load_face_stack` turns it into a :class:`FaceStack`: the SCRFD detector
(``models['detection']``) and the recogniser file (``models['recognition']
.model_file``), converted to a frozen PyTorch encoder on first use.
"""
from __future__ import annotations

import glob
import logging
import os

import numpy as np
import torch

from ..inference_tensors import normal_tensors
from .detector import DEFAULT_DET_SIZES, DET_THRESH, SCRFD_OUTPUTS, FaceDetector
from .errors import FaceStackError

log = logging.getLogger(__name__)

FACE_TASKS = ("detection", "recognition")


def build_face_analysis(pack: str = "antelopev2", provider: str = "auto"):
    """Find ``pack`` in ComfyUI's insightface folders and load it (no download)."""
    from .model_paths import find_model_pack

    return open_face_analysis(find_model_pack(pack), provider)


def open_face_analysis(files, provider: str = "auto"):
    """insightface's ``FaceAnalysis`` over the located pack ``files`` (a ``ModelPackFiles``), prepared
    like PuLID prepares it (640 px, threshold 0.5); a file it cannot use is a :class:`FaceStackError`
    naming the file."""
    from insightface.app import FaceAnalysis

    from .providers import ProviderMessages, notice_fallbacks, requested_providers

    requested = requested_providers(provider)
    try:
        with ProviderMessages() as said:
            fa = FaceAnalysis(name=os.path.abspath(files.folder), root=files.base or files.folder,
                              allowed_modules=list(FACE_TASKS), providers=requested)
    except Exception as exc:  # noqa: BLE001  (diagnosed: which file, and what is wrong with it)
        _raise_load_failure(files, exc)
    if "recognition" not in fa.models:
        raise FaceStackError(
            f"{files.recognizer} is not a face recognition model insightface can use (it needs one square "
            "image input of 112 pixels or more). Copy the model pack again."
        )
    for task, expected in (("detection", files.detector), ("recognition", files.recognizer)):
        used = getattr(fa.models[task], "model_file", "") or ""
        if os.path.basename(used) != os.path.basename(expected):
            log.warning("PersonalVideo: insightface took %s as the %s model of %s, not %s (another .onnx file "
                        "in that folder); remove the extra file to use %s.", used, task, files.folder,
                        os.path.basename(expected), os.path.basename(expected))
    active = list(fa.models["detection"].session.get_providers())
    notice_fallbacks(said.reasons(requested, active), active)
    fa.prepare(ctx_id=0, det_thresh=DET_THRESH, det_size=(DEFAULT_DET_SIZES[0],) * 2)
    load_face_stack(fa)  # checks the detector gives keypoints; kept on the object
    return fa


def _raise_load_failure(files, exc: Exception):
    """Raise why insightface could not load ``files.folder``: the first file onnxruntime cannot read, a
    detector that is not SCRFD, or else insightface's own words."""
    from .providers import create_session

    ours = {os.path.basename(files.detector), os.path.basename(files.recognizer)}
    others = sorted(p for p in glob.glob(os.path.join(files.folder, "*.onnx")) if os.path.basename(p) not in ours)
    sessions = {}
    for path in [files.detector, files.recognizer, *others]:
        sessions[path] = create_session(path, "CPU")  # a file onnxruntime cannot read raises, naming it
    outputs = len(sessions[files.detector].get_outputs())
    if outputs not in SCRFD_OUTPUTS:
        raise FaceStackError(f"{files.detector} is not an SCRFD face detector ({outputs} outputs; SCRFD has "
                              f"{', '.join(map(str, SCRFD_OUTPUTS))}). Copy the model pack again.") from exc
    raise FaceStackError(
        f"insightface could not load the {files.name} pack in {files.folder} ({type(exc).__name__}: "
        f"{str(exc).strip()[:300]}). Keep only the pack's own .onnx files in that folder; if it still fails, "
        "report it with your insightface and onnxruntime versions."
    ) from exc


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
        with normal_tensors():  # .to() under inference mode would make inference tensors
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
