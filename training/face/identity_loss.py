"""PersonalVideo's identity loss on decoded frames (paper Eq. 2), with gradient.

Frames layout: ``[B, 3, H, W]``, RGB, float in 0..1, channels first: what the VAE
decoder gives after ``(x + 1) / 2`` (ComfyUI IMAGE tensors [B, H, W, C] need
``.movedim(-1, 1)``).  For every frame:

1. detect faces on a detached uint8 copy (no gradient is needed for landmarks), first at the smallest
   detector size that holds the frame (:func:`~.detector.sizes_for`);
2. take the largest face, estimate the similarity transform from its 5 keypoints;
3. warp the frame itself with ``grid_sample`` to the 112x112 crop (differentiable);
4. embed with the frozen fp32 encoder and compare with every reference embedding.

loss = mean over frames with a face of (1 - mean over references of cos(e_ref, e_frame)).

Frames where no usable face is found (none detected, too small, or degenerate
keypoints no crop can be made from) are skipped and counted, never an error.
When no frame has a face, ``loss`` is a zero that is still connected to the
frames (``backward()`` works and gives zero gradients) and ``has_face`` is False,
so the trainer can skip the optimiser step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import device_of
from ..inference_tensors import normal_tensors
from .align import estimate_norm, warp_affine
from .detector import DEFAULT_DET_SIZES, MIN_FACE_PX, FaceDetector, sizes_for, to_bgr_uint8
from .errors import FaceStackError


@dataclass
class IdentityLossResult:
    loss: torch.Tensor  # scalar; carries gradient to the frames
    similarity: torch.Tensor  # [B] detached mean cosine per frame, NaN where skipped
    face_frames: list = field(default_factory=list)
    skipped_frames: list = field(default_factory=list)

    @property
    def has_face(self) -> bool:
        return bool(self.face_frames)

    @property
    def skipped(self) -> int:
        return len(self.skipped_frames)

    @property
    def mean_similarity(self) -> float:
        vals = self.similarity[~torch.isnan(self.similarity)]
        return float(vals.mean()) if vals.numel() else float("nan")


class IdentityLoss:
    """1 - cos identity loss against fixed reference embeddings.

    ``encoder``: :class:`~.encoder.ArcFaceEncoder` (frozen); ``references``: [M, D]
    embeddings (normalised here again).
    """

    def __init__(self, detector: FaceDetector, encoder, references: torch.Tensor,
                 det_sizes=DEFAULT_DET_SIZES, min_face_px: int = MIN_FACE_PX):
        if not torch.is_tensor(references) or references.ndim != 2 or references.shape[0] == 0:
            raise FaceStackError("identity loss needs reference embeddings [M, D] with M >= 1")
        self.detector = detector
        self.encoder = encoder
        with normal_tensors():  # references made inside a node are inference tensors
            self.references = F.normalize(references.detach().float().clone(), dim=-1)
        self.det_sizes = det_sizes
        self.min_face_px = min_face_px

    def find_transforms(self, frames: torch.Tensor):
        """(frame indices with a face, their [F, 2, 3] crop transforms), from a detached copy."""
        size = self.encoder.input_size
        idx, mats = [], []
        with torch.no_grad():
            for i in range(frames.shape[0]):
                bgr = to_bgr_uint8(frames[i].detach().movedim(0, -1), f"frame {i}")
                face = self.detector.detect_largest(bgr, sizes_for(*bgr.shape[:2], self.det_sizes))
                if face is None or face.size < self.min_face_px:
                    continue
                try:
                    mats.append(estimate_norm(face.kps, size))
                except ValueError:   # degenerate keypoints (coinciding or not finite): no usable face
                    continue
                idx.append(i)
        return idx, (np.stack(mats) if mats else np.zeros((0, 2, 3)))

    def __call__(self, frames: torch.Tensor) -> IdentityLossResult:
        if not torch.is_tensor(frames) or frames.ndim != 4 or frames.shape[1] != 3:
            shape = tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__
            raise FaceStackError(
                f"identity loss frames must be [B, 3, H, W] RGB in 0..1 (channels first, as the VAE decoder "
                f"gives); got {shape}. For a ComfyUI IMAGE [B, H, W, C] pass image.movedim(-1, 1)."
            )
        b = frames.shape[0]
        similarity = torch.full((b,), float("nan"))
        if b == 0:
            return IdentityLossResult(frames.sum() * 0.0, similarity)
        idx, mats = self.find_transforms(frames)
        skipped = [i for i in range(b) if i not in idx]
        if not idx:
            return IdentityLossResult(frames.float().sum() * 0.0, similarity, [], skipped)
        device = frames.device
        if device_of(self.encoder, device) != device:   # Module.to visits every tensor (ResNet-100: some
            with normal_tensors():                       # 900, 2 ms of host time), so only when it must move
                self.encoder.to(device)
        crops = warp_affine(frames[idx].float(), mats, self.encoder.input_size)
        emb = F.normalize(self.encoder(crops), dim=-1)
        cos = emb @ self.references.to(device).T  # [F, M]
        per_frame = cos.mean(1)
        loss = (1.0 - per_frame).mean()
        similarity[idx] = per_frame.detach().float().cpu()
        return IdentityLossResult(loss, similarity, idx, skipped)
