"""Frames and photos as RGB uint8 arrays [H, W, 3], from ComfyUI IMAGE tensors or decoded files.

Grayscale is repeated to three channels; RGBA is composited over mid grey.  A video's frames must share one
size (optical flow compares them pixel by pixel); reference photos may have any sizes.
"""
from __future__ import annotations

import numpy as np

from .errors import EvaluationError

MIN_SIDE = 16  # pixels: anything smaller cannot hold a face


def _to_rgb_uint8(array: np.ndarray, label: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise EvaluationError(f"{label} must be an image [H, W, C] with C = 1, 3 or 4; got shape {tuple(a.shape)}")
    if a.shape[0] < MIN_SIDE or a.shape[1] < MIN_SIDE:
        raise EvaluationError(f"{label} is only {a.shape[1]}x{a.shape[0]} pixels: too small to hold a face")
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise EvaluationError(f"{label} contains NaN or infinite values (an upstream node failed)")
        a = np.clip(a, 0.0, 1.0) * 255.0  # ComfyUI IMAGE values are 0..1
    else:
        a = a.astype(np.float32)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        alpha = a[..., 3:] / 255.0
        a = a[..., :3] * alpha + 127.5 * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def image_list(images, name: str) -> list:
    """RGB uint8 arrays from an IMAGE tensor [B, H, W, C], one image [H, W, C], or a list of either."""
    try:
        import torch
    except ImportError:  # the command line works without torch
        torch = None
    if images is None:
        raise EvaluationError(f"no {name} were given: connect an IMAGE")
    items = images if isinstance(images, (list, tuple)) else [images]
    out = []
    for item in items:
        if torch is not None and torch.is_tensor(item):
            item = item.detach().float().cpu().numpy()
        elif not isinstance(item, np.ndarray):
            raise EvaluationError(f"{name} must be IMAGE tensors or image arrays, got {type(item).__name__}")
        if item.ndim == 4:
            out += [item[i] for i in range(item.shape[0])]
        else:
            out.append(item)
    if not out:
        raise EvaluationError(f"no {name} were given (the batch is empty): connect an IMAGE with at least one image")
    single = name.rstrip("s")
    return [_to_rgb_uint8(a, f"{single} {i}") for i, a in enumerate(out)]


def video_frames(frames) -> list:
    """The frames of one video; they must share one size."""
    out = image_list(frames, "frames")
    h, w = out[0].shape[:2]
    for i, f in enumerate(out[1:], 1):
        if f.shape[:2] != (h, w):
            raise EvaluationError(
                f"frame {i} is {f.shape[1]}x{f.shape[0]} but frame 0 is {w}x{h}: the frames of one video must share "
                "one size (resize them to one size first)")
    return out
