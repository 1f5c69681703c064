"""The pack's one atomic file writer: a hidden temporary file in the target's folder, renamed into place.

A reader never sees a half-written file, and a failure (full disk, cancel) leaves
the old file, if any, as it was and no temporary file behind.
"""
from __future__ import annotations

import os
import tempfile


def atomic_write(path: str, write) -> str:
    """``write(tmp_path)`` writes the content; it then replaces ``path`` at once. Returns ``path``."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str, data: bytes) -> str:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    return atomic_write(path, write)
