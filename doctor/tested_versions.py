"""The versions of each runtime dependency the pack is tested with: the one table of them.

The doctor compares what is installed against it; requirements.txt and the install guide
(docs/install.md) point here.  A version is *inside* the tested range when it is at least ``oldest``
and its leading parts are at most ``newest`` (``newest="2.4"`` covers every 2.4.x,
``newest="5"`` every 5.x); below is *older than tested*, above *newer than tested*.

``older`` / ``newer`` say what goes wrong outside the range where that is known,
and what to do; otherwise the doctor gives the general advice (the range itself).
This module imports nothing heavy: it is plain data and a version comparison.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

INSIDE, OLDER, NEWER, MISSING = "inside", "older", "newer", "missing"


@dataclass(frozen=True)
class Tested:
    name: str             # what the user knows it as
    distributions: tuple  # pip distributions that provide it (any one of them)
    oldest: str
    newest: str
    install: str          # the pip arguments that install a tested version
    older: str = ""       # known trouble below ``oldest``, and what to do
    newer: str = ""       # known trouble above ``newest``, and what to do


ONNXRUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-silicon",
                             "onnxruntime-rocm", "onnxruntime-openvino", "onnxruntime-qnn")
OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                        "opencv-contrib-python-headless")

PYTHON = Tested(
    "Python", (), "3.10", "3.13", "",
    older="ComfyUI and this pack need Python 3.10 or newer: use a ComfyUI build with Python 3.10-3.13.",
    newer="insightface 0.7.3 has no prebuilt wheels for it (pip compiles it); torch and onnxruntime wheels may "
          "be missing too. Use Python 3.12 or 3.13, or insightface 2.x (pure Python).",
)

TESTED = (
    Tested("torch", ("torch",), "2.4", "2.15", "torch (with ComfyUI's install instructions for your GPU)",
           older="torch before 2.4 is not tested with this pack; update ComfyUI's torch as ComfyUI's README "
                 "says for your GPU."),
    Tested("numpy", ("numpy",), "1.26", "2.5", "\"numpy>=1.26\"",
           older="python -m pip install -U \"numpy>=1.26\" (older numpy has no wheels for Python 3.12 and "
                 "newer)."),
    Tested("onnxruntime", ONNXRUNTIME_DISTRIBUTIONS, "1.17", "1.32",
           "onnxruntime-gpu (NVIDIA) or onnxruntime (other machines), only one of them",
           older="onnxruntime-gpu before 1.17 is built for CUDA 11, so with today's CUDA 12 drivers and torch it "
                 "runs on the CPU: python -m pip install -U onnxruntime-gpu (or onnxruntime)."),
    Tested("insightface", ("insightface",), "0.7.3", "2.1", "insightface==0.7.3 (or insightface==2.1)",
           older="insightface before 0.7 has another FaceAnalysis (no providers, no allowed_modules): "
                 "python -m pip install -U insightface."),
    Tested("opencv", OPENCV_DISTRIBUTIONS, "4.9", "5", "\"opencv-python-headless>=4.9\""),
    Tested("onnx", ("onnx",), "1.14", "1.23", "\"onnx>=1.14\""),
    Tested("onnx2torch", ("onnx2torch",), "1.5.13", "1.5", "\"onnx2torch>=1.5.13,<2\"",
           newer="onnx2torch 2 is not tested: the face encoder conversion is checked against onnxruntime at "
                 "first use, so a wrong conversion is refused; if it is, python -m pip install "
                 "\"onnx2torch>=1.5.13,<2\"."),
    Tested("safetensors", ("safetensors",), "0.4.3", "0.8", "\"safetensors>=0.4.3\""),
    Tested("matplotlib", ("matplotlib",), "3.10", "3.11", "\"matplotlib>=3.10\""),
)


def release(version: str) -> tuple:
    """The numeric release of a version string: ``"2.4.1+cu121"`` -> (2, 4, 1); ``"1.26.0rc1"`` -> (1, 26, 0)."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
    if not m:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(p) for p in m.group(1).split("."))


def _pad(parts: tuple, n: int) -> tuple:
    return parts + (0,) * (n - len(parts))


def place(version: str, oldest: str, newest: str) -> str:
    """INSIDE, OLDER or NEWER: where ``version`` lies against the tested range ``oldest``..``newest``."""
    v, lo, hi = release(version), release(oldest), release(newest)
    n = max(len(v), len(lo))
    if _pad(v, n) < _pad(lo, n):
        return OLDER
    if v[:len(hi)] > hi:
        return NEWER
    return INSIDE


def range_text(t: Tested) -> str:
    return f"{t.oldest} to {t.newest}" + ("" if t.newest.count(".") >= 2 else ".x")
