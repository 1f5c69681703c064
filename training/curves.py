"""A small loss / similarity chart as a ComfyUI IMAGE (Pillow only)."""
from __future__ import annotations

import math

import numpy as np
import torch

COLOURS = {"token loss": (70, 130, 220), "adapter loss": (220, 80, 60), "face similarity": (60, 170, 90)}


def _points(values, x0, x1, y0, y1, lo, hi):
    pts = []
    n = max(len(values) - 1, 1)
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            continue
        t = (v - lo) / (hi - lo) if hi > lo else 0.5
        pts.append((x0 + (x1 - x0) * i / n, y1 - (y1 - y0) * t))
    return pts


def render_curves(series: dict, width: int = 640, height: int = 360) -> torch.Tensor:
    """One panel per series (name -> list of floats, NaN = skipped); IMAGE [1, H, W, 3]."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    names = [n for n, v in series.items() if v]
    if not names:
        draw.text((10, 10), "nothing trained", fill=(0, 0, 0))
    panel_h = height / max(len(names), 1)
    for k, name in enumerate(names):
        values = [float(v) for v in series[name]]
        finite = [v for v in values if math.isfinite(v)]
        top, bottom = k * panel_h + 18, (k + 1) * panel_h - 8
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        draw.rectangle([40, top, width - 10, bottom], outline=(180, 180, 180))
        last = f"{finite[-1]:.4f}" if finite else "n/a"
        draw.text((40, top - 14), f"{name}: {len(values)} points, last {last}, range {lo:.4f}..{hi:.4f}",
                  fill=(0, 0, 0))
        pts = _points(values, 40, width - 10, top + 2, bottom - 2, lo, hi)
        colour = COLOURS.get(name, (0, 0, 0))
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        elif pts:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=colour)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]
