"""Test helper: face similarity of frames against references, with any recogniser (the pack scores videos
with ``evaluation/``; this checks that the converted PyTorch encoder and insightface's onnxruntime model agree).

The paper evaluates with a recogniser other than the one it trains with; this
scorer takes the detector and any recogniser exposing
``embed(crops [N, 3, S, S] 0..1) -> [N, D]``: the PyTorch encoder of
``glintr100.onnx`` (:class:`~.encoder.ArcFaceEncoder`) or insightface's own
onnxruntime model of another pack (:class:`~.analysis.OnnxRecognizer`, e.g.
buffalo_l's ``w600k_r50.onnx``).

Frames are a ComfyUI IMAGE [B, H, W, C].  A frame's score is the mean cosine
similarity of its largest face to the reference embeddings; frames without a
face get ``None`` and are listed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from comfyui_personalvideo.training.face.align import estimate_norm, warp_affine
from comfyui_personalvideo.training.face.detector import (DEFAULT_DET_SIZES, MIN_FACE_PX, FaceDetector,
                                                          to_bgr_uint8, to_rgb01)
from comfyui_personalvideo.training.face.errors import FaceStackError
from comfyui_personalvideo.training.face.references import ReferenceEmbeddings, embed_references, iter_images


@dataclass
class SimilarityReport:
    scores: list  # per frame: float, or None where no face was found
    no_face: list = field(default_factory=list)  # frame indices

    @property
    def mean(self):
        vals = [s for s in self.scores if s is not None]
        return sum(vals) / len(vals) if vals else None

    def summary(self) -> str:
        mean = self.mean
        text = f"face similarity {mean:.4f} over {len(self.scores) - len(self.no_face)} frame(s)" if mean is not None \
            else "no face found in any frame"
        if self.no_face:
            text += f"; no face in frame(s) {', '.join(str(i) for i in self.no_face)}"
        return text


@torch.no_grad()
def face_similarity(detector: FaceDetector, recognizer, frames, references,
                    det_sizes=DEFAULT_DET_SIZES, min_face_px: int = MIN_FACE_PX) -> SimilarityReport:
    """Per-frame similarity of ``frames`` (IMAGE) to ``references``.

    ``references``: reference IMAGE(s), a :class:`ReferenceEmbeddings`, or an
    [M, D] embedding tensor made by the same recogniser.
    """
    if isinstance(references, ReferenceEmbeddings):
        ref = references.embeddings
    elif torch.is_tensor(references) and references.ndim == 2:
        ref = references
    else:
        ref = embed_references(detector, recognizer, references, det_sizes=det_sizes, min_face_px=min_face_px).embeddings
    ref = F.normalize(ref.float().cpu(), dim=-1)
    size = int(getattr(recognizer, "input_size", 112))
    scores, no_face = [], []
    for i, (label, frame) in enumerate(iter_images(frames, "frame")):
        rgb = to_rgb01(frame, label)
        face = detector.detect_largest(to_bgr_uint8(rgb, label), det_sizes)
        if face is None or face.size < min_face_px:
            scores.append(None)
            no_face.append(i)
            continue
        crop = warp_affine(rgb.permute(2, 0, 1)[None].cpu(), estimate_norm(face.kps, size)[None], size)
        emb = recognizer.embed(crop.clamp(0, 1).to(_device_of(recognizer))).float().cpu()
        if emb.shape[-1] != ref.shape[-1]:
            raise FaceStackError(
                f"reference embeddings have {ref.shape[-1]} dimensions but this recogniser gives {emb.shape[-1]}: "
                "embed the references with the same recogniser"
            )
        scores.append(float((F.normalize(emb, dim=-1) @ ref.T).mean()))
    return SimilarityReport(scores, no_face)


def _device_of(recognizer):
    try:
        return next(recognizer.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")
