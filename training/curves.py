"""The training chart as a ComfyUI IMAGE: one panel per series (token loss, adapter loss, face similarity)
over the steps / iterations, with axes, ticks, labels and the last value (matplotlib, off-screen). NaN values
(iterations without a face) leave a gap and are marked at the bottom of their panel.

Without matplotlib the chart is a note saying so (:func:`note_image`): the chart never stops a run.
"""
from __future__ import annotations

import math

import numpy as np
import torch

WIDTH_PX, PANEL_HEIGHT_PX, DPI = 768, 220, 100
COLOURS = {"token loss": "#1f77b4", "adapter loss": "#d62728", "face similarity": "#2ca02c"}
X_LABELS = {"token loss": "token step (stage 1)"}
STOP_COLOUR = "#9467bd"   # the early stop mark (training.early_stop)


def _image(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32) / 255.0)[None]


def note_image(text: str, width: int = WIDTH_PX, height: int = PANEL_HEIGHT_PX) -> torch.Tensor:
    """A plain IMAGE [1, H, W, 3] with ``text`` on it (Pillow)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (int(width), int(height)), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > max(8, int(width) // 7):
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    for i, part in enumerate(lines):
        draw.text((8, 8 + 14 * i), part, fill=(0, 0, 0))
    return _image(np.asarray(img))


def render_curves(series: dict, stopped_at: int | None = None, smoothed=None) -> torch.Tensor:
    """IMAGE [1, H, W, 3] of ``series`` (name -> list of floats, NaN = skipped); empty series are left out.
    ``stopped_at``: the adapter iteration where early stop ended stage 2, marked on the adapter panels;
    ``smoothed``: the early stop's smoothed similarity, drawn on the face-similarity panel."""
    try:
        import matplotlib
    except ImportError:
        return note_image("install matplotlib (pip install matplotlib) to see the loss / similarity chart")
    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = [n for n, v in series.items() if len(v)]
    if not names:
        return note_image("nothing was trained")
    fig = Figure(figsize=(WIDTH_PX / DPI, PANEL_HEIGHT_PX * len(names) / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        values = np.asarray([float(v) if v is not None else math.nan for v in series[name]], dtype=np.float64)
        steps = np.arange(1, len(values) + 1)
        finite = np.isfinite(values)
        colour = COLOURS.get(name, "#333333")
        ax.plot(steps, values, "-", color=colour, linewidth=1.2, marker="o" if len(values) <= 30 else None,
                markersize=3, label=name)
        if (~finite).any():
            low = np.nanmin(values) if finite.any() else 0.0
            ax.plot(steps[~finite], np.full(int((~finite).sum()), low), "x", color="#ff7f0e", markersize=6,
                    label="no face (skipped)")
        if name == "face similarity" and smoothed is not None and len(smoothed):
            ax.plot(np.arange(1, len(smoothed) + 1), np.asarray(smoothed, dtype=np.float64), "--",
                    color="#555555", linewidth=1.0, label="mean of the last 40 (early stop)")
        if stopped_at and name != "token loss":
            ax.axvline(stopped_at, color=STOP_COLOUR, linewidth=1.0, linestyle=":",
                       label=f"early stop after {stopped_at}")
        last = f"{values[finite][-1]:.4f}" if finite.any() else "n/a"
        ax.set_title(f"{name}: last {last}", fontsize=9)
        ax.set_xlabel(X_LABELS.get(name, "adapter iteration (stage 2)"), fontsize=8)
        ax.set_ylabel(name, fontsize=8)
        ax.set_xlim(0.5, max(len(values), 1) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    return _image(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
