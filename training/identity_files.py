"""Where a trained identity is written, and writing it all-or-nothing.

Two files per identity: the adapter ``models/sia/<name>.safetensors`` (with the
embedding and the training settings inside) and the token
``models/embeddings/<name>.safetensors`` (key ``emb_params``, what ComfyUI reads
for ``embedding:<name>``).  Names are sanitised (letters, digits, ``-``, ``_``,
``.``; no folders, no leading dot).  Both files are staged as hidden temporary
files in their folders and renamed into place; on any failure every new file is
removed and overwritten ones are put back.

A name answers to files in every sia and embeddings folder (``extra_model_paths.yaml``
adds more; ``embedding:<name>`` also finds files in subfolders and with the ``.pt`` and
``.bin`` endings), so clashes are looked for in all of them.  An adapter loaded
without its token file gets the token back from the vector the adapter carries
(:mod:`.token_names`); a different token of that name is never replaced.
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


# what ComfyUI tries for ``embedding:<name>`` in each embeddings folder and each of its subfolders, in order
EMBEDDING_SUFFIXES = ("", ".safetensors", ".pt", ".bin")


def _folders(kind: str) -> list:
    import folder_paths

    return [os.path.abspath(f) for f in folder_paths.get_folder_paths(kind)]


def embedding_files(name: str) -> list:
    """Every file ``embedding:<name>`` can stand for: in each embeddings folder (``extra_model_paths.yaml``
    adds more) and each of its subfolders, the first of ``<name>``, ``<name>.safetensors``, ``.pt``, ``.bin``
    that exists. ComfyUI takes one of them (which one, when there are several, is not fixed)."""
    found = []
    for folder in _folders("embeddings"):
        for root, _dirs, _files in os.walk(folder, followlinks=True):
            for suffix in EMBEDDING_SUFFIXES:
                path = os.path.join(root, name + suffix)
                if os.path.isfile(path):
                    found.append(path)
                    break
    return list(dict.fromkeys(found))


def _adapter_files(name: str) -> list:
    """``<name>.safetensors`` in every sia folder (the name Load SIA Adapter lists it under)."""
    found = [os.path.join(folder, name + ".safetensors") for folder in _folders("sia")]
    return list(dict.fromkeys(p for p in found if os.path.isfile(p)))


def identity_paths(name: str) -> dict:
    """Where identity ``name``'s adapter and token are: the files of that name where they exist (in any sia or
    embeddings folder), otherwise in the first folder of each kind."""
    name = sanitise_name(name)
    adapters = _adapter_files(name)
    tokens = [p for p in embedding_files(name) if p.endswith(".safetensors")]
    return {"sia": adapters[0] if adapters else os.path.join(_folders("sia")[0], name + ".safetensors"),
            "embedding": tokens[0] if tokens else os.path.join(_folders("embeddings")[0], name + ".safetensors")}


def existing(name: str) -> list:
    """The files that already answer to identity ``name``, in every sia and embeddings folder: adapters
    ``<name>.safetensors`` and every file ``embedding:<name>`` can stand for."""
    name = sanitise_name(name)
    return _adapter_files(name) + embedding_files(name)


def check_free(name: str, overwrite: bool) -> dict:
    """The two paths of ``name``; TrainingError if one exists and overwriting was not asked for, or if a file
    that would not be overwritten answers to the name too."""
    paths = identity_paths(name)
    taken = existing(name)
    if taken and not overwrite:
        raise TrainingError(
            f"an identity named '{sanitise_name(name)}' exists already ({', '.join(taken)}). "
            "Choose another identity_name, or set if_exists to overwrite to replace it (reuse loads it "
            "when it was trained from the same photos and settings).")
    others = [p for p in taken if p not in paths.values()]
    if others:
        raise TrainingError(
            f"the name '{sanitise_name(name)}' is also taken by {', '.join(others)}, which overwriting would not "
            f"replace, so 'embedding:{sanitise_name(name)}' or the adapter list would have two meanings. Move or "
            "rename that file, or choose another identity_name.")
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


def write_token(path: str, vector: torch.Tensor, key: str = "emb_params") -> str:
    """Write a token file (one [1, D] fp32 tensor under ``key``: ``emb_params``, what ComfyUI reads for
    ``embedding:<name>`` on SD1.5) atomically."""
    return atomic_write(path, _embedding_writer(vector, key))


def _embedding_writer(vector: torch.Tensor, key: str = "emb_params"):
    def write(path):
        from safetensors.torch import save_file

        save_file({key: vector.detach().float().cpu().reshape(1, -1).contiguous()}, path,
                  metadata={"format": "personalvideo-token"})
    return write


def _adapter_writer(adapter):
    def write(path):
        from ..sia.file_format import save_adapter

        save_adapter(adapter, path, overwrite=True)
    return write


def write_identity_files(paths: dict, adapter, vector: torch.Tensor | None) -> dict:
    """Write the token and the adapter to ``paths`` (``{"embedding": ..., "sia": ...}``), both or neither; only
    the adapter when ``vector`` is None (an identity without a token: the returned paths then hold ``sia`` only)."""
    if vector is None:
        paths = {"sia": paths["sia"]}
    writers = [(paths["sia"], _adapter_writer(adapter))]
    if vector is not None:
        writers.insert(0, (paths["embedding"], _embedding_writer(vector)))
    try:
        atomic_write_all(writers)
    except OSError as exc:
        raise TrainingError(f"could not write the identity files ({exc}). Nothing was saved: free disk space "
                            "or fix the folder permissions, then train again.") from exc
    return paths


def write_identity(name: str, adapter, vector: torch.Tensor | None, overwrite: bool = False) -> dict:
    """Write both files of identity ``name`` in ComfyUI's model folders, or neither (the adapter alone when
    ``vector`` is None); returns the paths written."""
    return write_identity_files(check_free(name, overwrite), adapter, vector)
