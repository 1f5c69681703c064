"""Where a trained identity is written, and writing it all-or-nothing.

Two files per identity: the adapter ``models/sia/<name>.safetensors`` (with the
embedding and the training settings inside) and the token
``models/embeddings/<name>.safetensors`` (key ``emb_params``, what ComfyUI reads
for ``embedding:<name>``).  Names are sanitised (letters, digits, ``-``, ``_``,
``.``; no folders, no leading dot).  Both files are staged as hidden temporary
files in their folders and renamed into place; on any failure every new file is
removed and overwritten ones are put back.

An adapter copied without its token file gets the token back from the vector
the adapter carries (:func:`ensure_token`, written atomically); a different
token of that name is never replaced.
"""
from __future__ import annotations

import os
import re

import torch

from ..sia.atomic_file import atomic_write, atomic_write_all
from .errors import TrainingError

_ALLOWED = re.compile(r"[^A-Za-z0-9_.-]+")
_RESERVED = {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
MAX_NAME = 64


def sanitise_name(name: str) -> str:
    if not isinstance(name, str):
        raise TrainingError(f"identity_name must be text (got {type(name).__name__}).")
    raw = name.strip()
    clean = _ALLOWED.sub("_", raw.replace(" ", "_")).strip("._")
    clean = re.sub(r"_+", "_", clean)[:MAX_NAME].rstrip("._")
    if not clean or clean.lower() in _RESERVED:
        raise TrainingError(f"identity_name {name!r} is not usable as a file name: use letters, digits, '-' or '_' "
                            "(e.g. 'alice').")
    return clean


def identity_paths(name: str) -> dict:
    import folder_paths

    name = sanitise_name(name)
    sia_dir = folder_paths.get_folder_paths("sia")[0]
    emb_dir = folder_paths.get_folder_paths("embeddings")[0]
    return {"sia": os.path.join(sia_dir, name + ".safetensors"),
            "embedding": os.path.join(emb_dir, name + ".safetensors")}


def existing(name: str) -> list:
    """The files of identity ``name`` that exist (adapter and/or token)."""
    return [p for p in identity_paths(name).values() if os.path.exists(p)]


def check_free(name: str, overwrite: bool) -> dict:
    """The two paths of ``name``; TrainingError if one exists and overwriting was not asked for."""
    paths = identity_paths(name)
    taken = existing(name)
    if taken and not overwrite:
        raise TrainingError(
            f"an identity named '{sanitise_name(name)}' exists already ({', '.join(taken)}). "
            "Choose another identity_name, or set if_exists to overwrite to replace it (reuse loads it "
            "when it was trained from the same photos and settings).")
    return paths


def read_token(path: str) -> torch.Tensor:
    """The vector(s) of a token file ([N, D] fp32); TrainingError when it is not a token file."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            keys = list(f.keys())
            key = "emb_params" if "emb_params" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise TrainingError(f"{path} is not a token (embedding) file: it holds {keys[:3]}. Move it away "
                                    "or rename the identity.")
            tensor = f.get_tensor(key)
            return tensor.float().reshape(-1, tensor.shape[-1])
    except TrainingError:
        raise
    except Exception as exc:
        raise TrainingError(f"{path} is not a readable token (embedding) file ({type(exc).__name__}: {exc}). "
                            "Move it away; Load SIA Adapter then writes the token from the adapter.") from None


def ensure_token(name: str, vector: torch.Tensor) -> str | None:
    """Make ``models/embeddings/<name>.safetensors`` hold ``vector``: written (atomically) when missing, left
    alone when it holds the same vector, TrainingError when it holds another one. Returns the path when it
    was written, None otherwise."""
    import folder_paths

    path = folder_paths.get_full_path("embeddings", sanitise_name(name) + ".safetensors") or \
        identity_paths(name)["embedding"]
    want = vector.detach().float().cpu().reshape(-1, vector.shape[-1])
    if os.path.exists(path):
        have = read_token(path)
        if have.shape != want.shape or not torch.allclose(have, want, rtol=0, atol=1e-6):
            raise TrainingError(
                f"the token file {path} holds another token than the adapter '{name}' carries, so "
                f"'embedding:{name}' would call the wrong identity. Move or delete that file (Load SIA Adapter "
                "then writes the adapter's own token), or rename the adapter file.")
        return None
    try:
        return atomic_write(path, _embedding_writer(want))
    except OSError as exc:
        raise TrainingError(f"could not write the token file {path} ({exc}): free disk space or fix the "
                            "folder permissions.") from exc


def _embedding_writer(vector: torch.Tensor):
    def write(path):
        from safetensors.torch import save_file

        save_file({"emb_params": vector.detach().float().cpu().reshape(1, -1).contiguous()}, path,
                  metadata={"format": "personalvideo-token"})
    return write


def _adapter_writer(adapter):
    def write(path):
        from ..sia.file_format import save_adapter

        save_adapter(adapter, path, overwrite=True)
    return write


def write_identity_files(paths: dict, adapter, vector: torch.Tensor) -> dict:
    """Write the token and the adapter to ``paths`` (``{"embedding": ..., "sia": ...}``), both or neither."""
    try:
        atomic_write_all([(paths["embedding"], _embedding_writer(vector)), (paths["sia"], _adapter_writer(adapter))])
    except OSError as exc:
        raise TrainingError(f"could not write the identity files ({exc}). Nothing was saved: free disk space "
                            "or fix the folder permissions, then train again.") from exc
    return paths


def write_identity(name: str, adapter, vector: torch.Tensor, overwrite: bool = False) -> dict:
    """Write both files of identity ``name`` in ComfyUI's model folders, or neither; returns the paths."""
    return write_identity_files(check_free(name, overwrite), adapter, vector)
