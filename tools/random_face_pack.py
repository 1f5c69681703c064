"""A random-weight antelopev2-layout face pack and photos with known landmarks (no real weights offline).

For proving the plumbing (the main job) and for tests; what these models say about faces is
meaningless, and the main job's output says so.

- A recogniser: the pack's iResNet (the real ArcFace architecture) with random weights,
  exported to ONNX with torch.onnx.export.
- A detector with SCRFD's exact ONNX contract (input [1, 3, H, W]; nine outputs:
  scores, boxes and keypoints for strides 8/16/32, two anchors per location), so
  insightface's real SCRFD post-processing runs on it.  Its outputs are computed
  in the graph from the input size: each configured face is given in units of
  the detector input side, so in a square image it lands on the same image
  pixels at every detector size.  A face is reported only where the picture is
  textured inside its box (blank images have no face) and, optionally, only at
  detector sizes <= ``max_det`` (to exercise retries).
- Real photos shipped by installed packages, with hand-measured landmarks
  (measured on enlarged crops of the images).

The pack's modules are imported as ``comfyui_personalvideo`` (after
:func:`tools.comfy_host.bootstrap`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

def _pkg_file(module: str, *parts) -> Path:
    import importlib

    return Path(importlib.import_module(module).__file__).resolve().parent.joinpath(*parts)


# Hand-measured 5-point landmarks (left eye, right eye, nose tip, mouth left, mouth right), x/y pixels.
PHOTOS = {
    "grace_hopper": (("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"),
                     [[220, 187.5], [305, 186], [261, 246], [230, 277.5], [290, 276]]),
    "astronaut": (("skimage", "data", "astronaut.png"),
                  [[204.2, 101.3], [245, 103.3], [224, 127.5], [204, 140.8], [243.3, 141.7]]),
    "t1_group": (("insightface", "data", "images", "t1.jpg"),
                 [[492, 319], [537, 331], [518, 359], [490, 370], [540, 381]]),
    "tom_hanks": (("insightface", "data", "images", "Tom_Hanks_54745.png"),
                  [[38, 50], [71, 50], [48, 77], [38, 91], [65, 91]]),
}


def photo_bgr(name: str) -> np.ndarray:
    parts, _ = PHOTOS[name]
    path = _pkg_file(parts[0], *parts[1:])
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {path}"
    return img


def photo_kps(name: str) -> np.ndarray:
    return np.asarray(PHOTOS[name][1], dtype=np.float64)


def photo_image(name: str) -> torch.Tensor:
    """The photo as a ComfyUI IMAGE [1, H, W, 3] RGB float 0..1."""
    rgb = photo_bgr(name)[..., ::-1].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb))[None]


def box_from_kps(kps: np.ndarray) -> np.ndarray:
    eye = float(np.linalg.norm(kps[1] - kps[0]))
    return np.array([kps[:, 0].min() - 0.7 * eye, kps[:, 1].min() - 0.9 * eye,
                     kps[:, 0].max() + 0.7 * eye, kps[:, 1].max() + 0.6 * eye])


def face_spec(kps_px, image_hw, box_px=None, max_det: int = 10000) -> dict:
    """A detector face at image pixels ``kps_px`` for square-ish images of size ``image_hw``."""
    side = float(max(image_hw))
    kps = np.asarray(kps_px, dtype=np.float64)
    box = box_from_kps(kps) if box_px is None else np.asarray(box_px, dtype=np.float64)
    return {"kps": kps / side, "box": box / side, "max_det": max_det}


class FakeSCRFD(nn.Module):
    """SCRFD's I/O contract with faces fixed in relative detector-input units."""

    STRIDES = (8, 16, 32)

    def __init__(self, faces, texture_threshold: float = 0.03):
        super().__init__()
        self.register_buffer("kps", torch.tensor(np.stack([f["kps"] for f in faces]), dtype=torch.float32))
        self.register_buffer("box", torch.tensor(np.stack([f["box"] for f in faces]), dtype=torch.float32))
        self.register_buffer("max_det", torch.tensor([float(f["max_det"]) for f in faces]))
        self.texture_threshold = texture_threshold

    def forward(self, x):
        side = torch.ones_like(x[0, 0, 0, :]).sum()  # detector input width (square input)
        pix = torch.ones_like(x[0, 0])
        py, px = pix.cumsum(0) - 1.0, pix.cumsum(1) - 1.0
        gates = []
        for f in range(self.box.shape[0]):
            b = self.box[f] * side
            inside = ((px >= b[0]) & (px <= b[2]) & (py >= b[1]) & (py <= b[3])).float()
            area = inside.sum().clamp(min=1.0)
            mean = (x[0] * inside).sum((1, 2)) / area
            dev = ((x[0] - mean[:, None, None]).abs() * inside).sum() / (3.0 * area)
            gates.append((dev > self.texture_threshold).float() * (side <= self.max_det[f]).float())
        scores, boxes, kpss = [], [], []
        for s in self.STRIDES:
            pooled = nn.functional.avg_pool2d(x[:, :1], s)[0, 0]
            ones = torch.ones_like(pooled)
            ay, ax = (ones.cumsum(0) - 1.0) * s, (ones.cumsum(1) - 1.0) * s
            score = ones * 0.0
            dist = [ones * 0.0 for _ in range(4)]
            kd = [ones * 0.0 for _ in range(10)]
            if s == 32:
                for f in range(self.box.shape[0]):
                    b = self.box[f] * side
                    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
                    sel = ((torch.floor((cx + s / 2) / s) * s == ax) & (torch.floor((cy + s / 2) / s) * s == ay)).float()
                    sel = sel * gates[f]
                    score = torch.maximum(score, sel)
                    edges = [(ax - b[0]), (ay - b[1]), (b[2] - ax), (b[3] - ay)]
                    dist = [d + sel * e / s for d, e in zip(dist, edges)]
                    k = self.kps[f] * side
                    for j in range(5):
                        kd[2 * j] = kd[2 * j] + sel * (k[j, 0] - ax) / s
                        kd[2 * j + 1] = kd[2 * j + 1] + sel * (k[j, 1] - ay) / s
            # two anchors per location; the second never fires
            scores.append(torch.stack([score, score * 0.0], -1).reshape(-1, 1))
            boxes.append(torch.stack([torch.stack(dist, -1)] * 2, -2).reshape(-1, 4))
            kpss.append(torch.stack([torch.stack(kd, -1)] * 2, -2).reshape(-1, 10))
        return tuple(scores + boxes + kpss)


def export_detector(path, faces, texture_threshold: float = 0.03) -> str:
    model = FakeSCRFD(faces, texture_threshold).eval()
    names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in FakeSCRFD.STRIDES]
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 640, 640), str(path), input_names=["input.1"],
                          output_names=names, dynamic_axes={"input.1": {2: "H", 3: "W"}},
                          opset_version=13, dynamo=False)
    return str(path)


def export_recognizer(path, depth: str = "tiny", seed: int = 0) -> str:
    from comfyui_personalvideo.training.face import iresnet

    model = iresnet.randomize_(iresnet.build_iresnet(depth), seed)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, 112, 112), str(path), input_names=["input.1"],
                          output_names=["embedding"], dynamic_axes={"input.1": {0: "N"}, "embedding": {0: "N"}},
                          opset_version=13, dynamo=False)
    return str(path)


def make_pack(root, name: str = "antelopev2", faces=None, nested: bool = False, recognizer: str | None = None,
              depth: str = "tiny", seed: int = 0) -> Path:
    """A model pack folder ``root/models/<name>[/<name>]`` with a fake detector and a recogniser.

    ``recognizer``: an existing ONNX file to copy (saves re-exporting).
    """
    from comfyui_personalvideo.training.face.model_paths import MODEL_PACKS

    det_name, rec_name = MODEL_PACKS[name]
    folder = Path(root) / "models" / name
    if nested:
        folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    if faces is None:
        faces = [face_spec(photo_kps("astronaut"), (512, 512))]
    export_detector(folder / det_name, faces)
    if recognizer is not None:
        import shutil

        shutil.copyfile(recognizer, folder / rec_name)
    else:
        export_recognizer(folder / rec_name, depth, seed)
    return folder


def face_crop(name: str, size: int = 128, margin: float = 1.5) -> tuple:
    """(BGR image [size, size, 3], landmarks in its pixels): a square crop of a photo around its face,
    ``margin`` times the face box wide, so the face fills most of the picture at any size."""
    bgr, kps = photo_bgr(name), photo_kps(name)
    x0, y0, x1, y1 = box_from_kps(kps)
    side = margin * max(x1 - x0, y1 - y0)
    left = float(np.clip((x0 + x1 - side) / 2, 0, bgr.shape[1] - side))
    top = float(np.clip((y0 + y1 - side) / 2, 0, bgr.shape[0] - side))
    crop = bgr[int(top):int(top + side), int(left):int(left + side)]
    scale = size / crop.shape[1]
    image = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return image, (kps - [int(left), int(top)]) * scale
