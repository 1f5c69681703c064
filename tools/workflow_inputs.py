"""The user's own files a UI workflow names (photos, videos in ComfyUI/input), and stand-ins for them.

A host lists the files of its input folder in LoadImage's (and Load Video's) choices; a workflow
that names a file the host does not have shows an invalid value in the frontend and fails
validation. To load a workflow as a user who followed its notes would see it, put small files
with those names in the host's input folder first.
"""
from __future__ import annotations

import re
from pathlib import Path

IMAGE_FILE = re.compile(r"\.(png|jpe?g|webp|bmp)$", re.I)
INPUT_FILE = re.compile(r"\.(png|jpe?g|webp|bmp|gif|mp4|webm|mov|mkv|avi)$", re.I)


def input_files(workflow: dict) -> set:
    """Names of the photos and videos a UI workflow's widgets hold."""
    names = set()
    for node in workflow.get("nodes", []):
        values = node.get("widgets_values") or []
        for value in values.values() if isinstance(values, dict) else values:
            if isinstance(value, str) and INPUT_FILE.search(value):
                names.add(value)
    return names


def place_input_files(folder: Path, names, photo: Path | None = None) -> list:
    """Write a stand-in for each named file missing from ``folder``; return the files written.

    Photos: ``photo`` (any image) resized to 512 px, or a grey gradient. Videos: a few bytes (a
    host without the video pack's decoder only checks that the file exists).
    """
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name in sorted(names):
        path = folder / name
        if path.exists():
            continue
        if IMAGE_FILE.search(name):
            image = Image.open(photo).convert("RGB") if photo else Image.linear_gradient("L").convert("RGB")
            image.thumbnail((512, 512))
            image.save(path)
        else:
            path.write_bytes(b"stand-in video")
        made.append(path)
    return made
