"""The pack's one atomic file writer: a hidden temporary file in the target's folder, renamed into place.

A reader never sees a half-written file, and a failure (full disk, cancel) leaves
the old file, if any, as it was and no temporary file behind.  The new content is
flushed to the disk (fsync) before the rename, and the folder after it where the
system allows (not on Windows), so a power cut leaves the old file or the new one,
never an empty one.  :func:`atomic_write_all` does the same for files that belong
together (an identity's adapter and token): all are written, or none is changed.
"""
from __future__ import annotations

import os
import tempfile


def _sync_file(path: str) -> None:
    """Flush ``path``'s content to the disk (a descriptor open for writing: Windows needs one)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: str) -> None:
    """Flush a folder's entries (the rename) to the disk; a no-op where folders cannot be opened (Windows) or
    synced (some network file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write) -> str:
    """``write(tmp_path)`` writes the content; it then replaces ``path`` at once. Returns ``path``."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        _sync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _sync_folder(folder)
    return path


def _staging_name(path: str, kind: str) -> str:
    fd, name = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=kind, dir=os.path.dirname(path))
    os.close(fd)
    return name


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_all(jobs) -> list:
    """``jobs``: (path, write) pairs as for :func:`atomic_write`. Every file is staged first, then all are
    renamed into place; on any failure the new files are removed and the files they replaced put back.
    Returns the paths."""
    jobs = [(os.path.abspath(path), write) for path, write in jobs]
    staged, placed, backups = [], [], []
    try:
        for path, write in jobs:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            staged.append(_staging_name(path, ".tmp"))
            write(staged[-1])
            _sync_file(staged[-1])
        for (path, _), tmp in zip(jobs, staged):
            if os.path.exists(path):
                backup = _staging_name(path, ".bak")
                os.replace(path, backup)
                backups.append((backup, path))
            os.replace(tmp, path)
            placed.append(path)
    except BaseException:
        for path in placed:
            _remove(path)
        for backup, path in backups:
            os.replace(backup, path)
        for tmp in staged:
            _remove(tmp)
        raise
    for folder in dict.fromkeys(os.path.dirname(path) for path, _ in jobs):
        _sync_folder(folder)
    for backup, _ in backups:
        _remove(backup)
    return [path for path, _ in jobs]


def atomic_write_bytes(path: str, data: bytes) -> str:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    return atomic_write(path, write)
