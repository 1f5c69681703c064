"""The chart of a scoring run: the verdict and identity match per frame (frames without a face marked; 50 is
the recogniser's same-person threshold) and motion per frame pair."""
from __future__ import annotations

import numpy as np

from .verdict import headline

WIDTH_PX, HEIGHT_PX, DPI = 768, 512, 100


def render_chart(report: dict) -> np.ndarray:
    """RGB uint8 [H, W, 3] image of the report's verdict, per-frame identity match and motion (matplotlib,
    off-screen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.ticker import MaxNLocator

    identity, motion = report["identity"], report["motion"]
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
    frames = identity["per_frame"]
    xs = [f["frame"] for f in frames if f["identity_match"] is not None]
    ys = [f["identity_match"] for f in frames if f["identity_match"] is not None]
    missing = [f["frame"] for f in frames if f["identity_match"] is None]
    top.axhspan(0.0, 50.0, color="#d62728", alpha=0.06)
    top.axhline(50.0, color="#7f7f7f", linestyle=":", linewidth=1,
                label=f"same-person threshold ({identity['threshold']['same_person_when']})")
    top.plot(xs, ys, "o-", color="#1f77b4", label="identity match")
    if identity["identity_match"] is not None:
        top.axhline(identity["identity_match"], color="#1f77b4", linestyle="--", linewidth=1,
                    label=f"video {identity['identity_match']:.0f}")
    if missing:
        top.plot(missing, [0.0] * len(missing), "x", color="#d62728", markersize=9, label="no face")
    top.set_xlim(-0.5, max(1, identity["frame_count"]) - 0.5)
    top.set_ylim(0.0, 100.0)
    top.set_ylabel("identity match (0-100)")
    top.set_title(f"{headline(identity['verdict'], identity['identity_match'])}   "
                  f"({identity['recogniser']} / {identity['detector']})", fontsize=10)
    top.grid(alpha=0.3)
    top.legend(loc="lower right", fontsize=8)
    mags = motion["pair_magnitudes_px"]
    if mags:
        stride = motion.get("frame_stride") or 1   # pair i: frames i x stride and (i + 1) x stride
        bottom.bar((np.arange(len(mags)) + 0.5) * stride, mags, width=0.8 * stride, color="#2ca02c",
                   label="flow, top 5% (px)" + (f", every {stride}th frame" if stride > 1 else ""))
        bottom.axhline(motion["threshold_px"], color="#ff7f0e", linestyle="--", linewidth=1, label="moving above")
        bottom.legend(loc="upper right", fontsize=8)
    else:
        bottom.text(0.5, 0.5, motion["reason"] or "no motion data", ha="center", va="center",
                    transform=bottom.transAxes)
    bottom.set_xlim(-0.5, max(1, identity["frame_count"]) - 0.5)
    bottom.set_xlabel("frame")
    bottom.set_ylabel("motion (px)")
    bottom.grid(alpha=0.3)
    for axes in (top, bottom):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
