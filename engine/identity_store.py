"""Where the engine writes an identity, in the nodes' layout, both files or neither.

``<models>/sia/<name>.safetensors`` (the adapter, token and settings inside, read by
Load SIA Adapter and the stock LoraLoader) and ``<models>/embeddings/<name>.safetensors``
(key ``emb_params``: ComfyUI's ``embedding:<name>``).  ``<models>`` is a ComfyUI
``models`` folder when a ComfyUI root is given, else a folder of the user's choice.
"""
from __future__ import annotations

import os

import torch

from ..training.identity_files import sanitise_name, write_identity_files
from .errors import EngineError


def identity_paths(models_dir: str, name: str) -> dict:
    name = sanitise_name(name)
    return {"sia": os.path.join(models_dir, "sia", name + ".safetensors"),
            "embedding": os.path.join(models_dir, "embeddings", name + ".safetensors")}


def check_free(models_dir: str, name: str, overwrite: bool) -> dict:
    paths = identity_paths(models_dir, name)
    taken = [p for p in paths.values() if os.path.exists(p)]
    if taken and not overwrite:
        raise EngineError(f"an identity named {sanitise_name(name)!r} exists already ({', '.join(taken)}); choose "
                          "another --name or pass --overwrite.")
    return paths


def write_identity(models_dir: str, name: str, adapter, vector: torch.Tensor, overwrite: bool = False) -> dict:
    """Both files (the nodes' writer: all or nothing), under ``models_dir``; returns the paths."""
    return write_identity_files(check_free(models_dir, name, overwrite), adapter, vector)
