"""Can the trainer write its two files: models/sia (the adapter) and models/embeddings (the token)?

The folders are the ones the trainer itself writes to.  A folder that does not
exist yet is fine when it can be created; the probe leaves nothing behind.
"""
from __future__ import annotations

import os
import tempfile

from .result import fail, ok

PROBE_NAME = "pv_doctor_probe"
SIA = "models/sia (write)"
EMBEDDINGS = "models/embeddings (write)"


def _nearest_existing(folder: str) -> str:
    while folder and not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def can_write(folder: str) -> tuple:
    """(writable, why not)."""
    target = _nearest_existing(folder)
    if os.path.exists(target) and not os.path.isdir(target):
        return False, f"{target} is a file, not a folder"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".pv-doctor-", dir=target)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return False, f"{target}: {exc.strerror or exc}"
    return True, ""


def _check(name: str, kind: str, what: str):
    from ..training.identity_files import identity_paths

    folder = os.path.dirname(identity_paths(PROBE_NAME)[kind])
    good, why = can_write(folder)
    if not good:
        return fail(name, f"training cannot save {what} in {folder}: {why}.",
                    "Give the user running ComfyUI write access to that folder (or point the folder elsewhere "
                    "with extra_model_paths.yaml).", folder=folder)
    state = "writable" if os.path.isdir(folder) else "will be created at the first training"
    return ok(name, f"{folder} ({state}).", folder=folder)


def check_sia_folder(ctx):
    return _check(SIA, "sia", "the adapter")


def check_embeddings_folder(ctx):
    return _check(EMBEDDINGS, "embedding", "the identity token")
