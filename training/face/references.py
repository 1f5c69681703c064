"""Reference photos to aligned face crops, reference embeddings, and the training crops of stage 1.

References are ComfyUI IMAGE tensors [B, H, W, C] (float 0..1, RGB, RGBA or
grey, any size), one tensor or a list of them (different sizes cannot share a
batch).  In every image the largest face is taken, detected at 640 and then at
smaller detector sizes when nothing is found.  Images without a usable face are
reported, not fatal; only when no image has one is a :class:`FaceStackError`
raised, listing every image and why it was skipped.

Stage 1 (textual inversion) trains on :func:`training_crops`: from each photo
with a face, a face-centred crop with context, at the training resolution
(the node's width x height): the face box's longer side is
:data:`FACE_SHARE` (40 %) of the crop's shorter side, i.e. the crop is 2.5
face boxes across, showing hair, neck and some background.  Where the photo is
too small for that margin the crop is the largest one of the right shape that
fits, still holding the face, as near the centre as the photo allows.  So
photos of any size, shape and number (a 12-megapixel phone photo, a portrait
and a landscape picture in one list) all become same-size training images.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..devices import device_of
from .align import ARCFACE_SIZE, estimate_norm, warp_affine
from .augment import AugmentConfig, augment_crops
from .detector import DEFAULT_DET_SIZES, MIN_FACE_PX, FaceDetector, to_bgr_uint8, to_rgb01
from .errors import FaceStackError


@dataclass
class ReferenceFaces:
    crops: torch.Tensor  # [K, 3, S, S] RGB 0..1, CPU
    labels: list  # label of the image each crop comes from
    faces: list  # detector.Face per crop
    skipped: dict = field(default_factory=dict)  # label -> reason

    def summary(self) -> str:
        text = f"{len(self.labels)} reference face(s)"
        if self.skipped:
            text += "; skipped: " + "; ".join(f"{k}: {v}" for k, v in self.skipped.items())
        return text


@dataclass
class ReferenceEmbeddings:
    embeddings: torch.Tensor  # [M, D], L2-normalised, no grad
    labels: list  # the reference image of each row ("... (augmented)" for augmented copies)
    faces: ReferenceFaces


def iter_images(images, name: str = "reference"):
    """(label, [H, W, C] tensor) for a tensor [B, H, W, C] / [H, W, C] or a list of them."""
    if torch.is_tensor(images):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise FaceStackError(f"{name} images must be IMAGE tensors [B, H, W, C], got {type(images).__name__}")
    out = []
    for t, batch in enumerate(images):
        if not torch.is_tensor(batch):
            raise FaceStackError(f"{name} input {t + 1} is {type(batch).__name__}, not an IMAGE tensor")
        if batch.ndim == 3 and batch.shape[-1] in (1, 3, 4):
            batch = batch[None]
        if batch.ndim != 4:
            raise FaceStackError(f"{name} input {t + 1} must be [B, H, W, C], got shape {tuple(batch.shape)}")
        for b in range(batch.shape[0]):
            label = f"{name} image {b + 1}" if len(images) == 1 else f"{name} input {t + 1} image {b + 1}"
            out.append((label, batch[b]))
    if not out:
        raise FaceStackError(f"no {name} images were given (the batch is empty): connect at least one photo with a face")
    return out


def detect_references(detector: FaceDetector, images, det_sizes=DEFAULT_DET_SIZES, min_face_px: int = MIN_FACE_PX,
                      crop_size: int = ARCFACE_SIZE, name: str = "reference") -> ReferenceFaces:
    crops, labels, faces, skipped = [], [], [], {}
    for label, image in iter_images(images, name):
        rgb = to_rgb01(image, label)
        face = detector.detect_largest(to_bgr_uint8(rgb, label), det_sizes)
        if face is None:
            skipped[label] = f"no face found (tried detector sizes {', '.join(str(s) for s in det_sizes)})"
            continue
        if face.size < min_face_px:
            skipped[label] = (f"face too small ({face.size:.0f} px, at least {min_face_px} px needed): "
                              "use a closer or larger photo")
            continue
        try:
            m = estimate_norm(face.kps, crop_size)
        except ValueError as exc:   # degenerate keypoints: no crop can be made from them
            skipped[label] = f"the face's landmarks are unusable ({exc}): use a sharper, more frontal photo"
            continue
        crop = warp_affine(rgb.permute(2, 0, 1)[None].cpu(), m[None], crop_size)[0]
        crops.append(crop.clamp(0, 1))
        labels.append(label)
        faces.append(face)
    if not crops:
        listing = "\n".join(f"  {k}: {v}" for k, v in skipped.items())
        raise FaceStackError(
            f"none of the {len(skipped)} {name} image(s) has a usable face:\n{listing}\n"
            "Use photos where one face is clearly visible, frontal or three-quarter, at least "
            f"{min_face_px} px wide."
        )
    return ReferenceFaces(torch.stack(crops), labels, faces, skipped)


@torch.no_grad()
def embed_references(detector: FaceDetector, encoder, images, augment_copies: int = 0, seed: int = 0,
                     augment_cfg: AugmentConfig = AugmentConfig(), det_sizes=DEFAULT_DET_SIZES,
                     min_face_px: int = MIN_FACE_PX) -> ReferenceEmbeddings:
    """L2-normalised embeddings of the reference faces (and of seeded augmented copies).

    ``encoder`` is anything with ``embed(crops [N, 3, S, S] 0..1) -> [N, D]``: the
    PyTorch :class:`~.encoder.ArcFaceEncoder` or :class:`~.analysis.OnnxRecognizer`.
    ``images`` may also be a :class:`ReferenceFaces` already detected.
    """
    refs = images if isinstance(images, ReferenceFaces) else detect_references(
        detector, images, det_sizes, min_face_px, getattr(encoder, "input_size", ARCFACE_SIZE))
    crops, labels = refs.crops, list(refs.labels)
    if augment_copies > 0:
        extra = augment_crops(refs.crops, augment_copies, seed, augment_cfg)
        crops = torch.cat([crops, extra], 0)
        labels += [f"{lab} (augmented)" for lab in refs.labels for _ in range(augment_copies)]
    device = device_of(encoder, fallback="cpu")
    emb = torch.cat([encoder.embed(chunk.to(device)) for chunk in crops.split(16)], 0)
    return ReferenceEmbeddings(emb.detach().float(), labels, refs)


FACE_SHARE = 0.4   # face box's longer side / the training crop's shorter side


@dataclass
class TrainingCrops:
    images: torch.Tensor   # IMAGE [K, height, width, 3], RGB 0..1
    labels: list           # the photo each crop comes from
    boxes: list            # (left, top, right, bottom) of each crop in its photo's pixels


def crop_box(face_bbox, image_wh, out_wh, face_share: float = FACE_SHARE) -> tuple:
    """The crop (left, top, right, bottom), in photo pixels, of aspect ``out_wh`` centred on ``face_bbox``."""
    x0, y0, x1, y1 = (float(v) for v in face_bbox[:4])
    img_w, img_h = (float(v) for v in image_wh)
    aspect = float(out_wh[0]) / float(out_wh[1])
    short = max(x1 - x0, y1 - y0) / face_share
    w, h = (short * aspect, short) if aspect >= 1.0 else (short, short / aspect)
    fit = min(1.0, img_w / w, img_h / h)
    w, h = w * fit, h * fit
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left = min(max(cx - w / 2.0, 0.0), img_w - w)
    top = min(max(cy - h / 2.0, 0.0), img_h - h)
    return left, top, left + w, top + h


def _resample(rgb: torch.Tensor, box, width: int, height: int) -> torch.Tensor:
    """The ``box`` of ``rgb`` [H, W, 3] resampled to [height, width, 3] (area-faithful when shrinking)."""
    left, top, right, bottom = box
    x0, y0 = int(round(left)), int(round(top))
    x1 = max(x0 + 1, min(int(round(right)), rgb.shape[1]))
    y1 = max(y0 + 1, min(int(round(bottom)), rgb.shape[0]))
    region = rgb[y0:y1, x0:x1].permute(2, 0, 1)[None].float()
    out = F.interpolate(region, size=(int(height), int(width)), mode="bilinear", align_corners=False,
                        antialias=True)
    return out[0].permute(1, 2, 0).clamp(0, 1)


@torch.no_grad()
def training_crops(images, refs: ReferenceFaces, width: int, height: int, face_share: float = FACE_SHARE,
                   name: str = "reference") -> TrainingCrops:
    """Face-centred crops at ``width`` x ``height`` of the photos ``refs`` found a face in (same ``images``)."""
    faces = dict(zip(refs.labels, refs.faces))
    crops, labels, boxes = [], [], []
    for label, image in iter_images(images, name):
        face = faces.get(label)
        if face is None:
            continue
        rgb = to_rgb01(image, label).cpu()
        box = crop_box(face.bbox, (rgb.shape[1], rgb.shape[0]), (width, height), face_share)
        crops.append(_resample(rgb, box, width, height))
        labels.append(label)
        boxes.append(box)
    return TrainingCrops(torch.stack(crops).contiguous(), labels, boxes)
