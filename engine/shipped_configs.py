"""The architecture configs shipped with the engine (``configs/*.json``), so diffusers never fetches one.

Each file holds the full-size SD1.5 (or AnimateDiff) values written from the
architecture; the loaders override the values a file's shapes tell (widths,
levels, depths), so a smaller model of the same layout loads too.
"""
from __future__ import annotations

import json
import os

_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def shipped_config(name: str) -> dict:
    """The config ``configs/<name>.json`` without its ``_note``."""
    with open(os.path.join(_FOLDER, name + ".json"), encoding="utf-8") as f:
        config = json.load(f)
    config.pop("_note", None)
    return config
