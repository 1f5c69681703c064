"""Where the engine writes an identity, in the nodes' layout, both files or neither.

``<models>/sia/<name>.safetensors`` (the adapter, token and settings inside, read by
Load SIA Adapter and the stock LoraLoader) and ``<models>/embeddings/<name>.safetensors``
(key ``emb_params``: ComfyUI's ``embedding:<name>``).  ``<models>`` is a ComfyUI
``models`` folder when a ComfyUI root is given, else a folder of the user's choice.
"""
from __future__ import annotations

import os

import torch

from ..sia.file_format import save_adapter
from ..training.identity_files import sanitise_name
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
    """Write the embedding, then the adapter (each atomically); if the adapter fails, the new embedding goes."""
    from safetensors.torch import save_file

    paths = check_free(models_dir, name, overwrite)
    emb = paths["embedding"]
    os.makedirs(os.path.dirname(emb), exist_ok=True)
    tmp = os.path.join(os.path.dirname(emb), f".{os.path.basename(emb)}.tmp")
    backup = emb + ".bak" if os.path.exists(emb) else None
    try:
        save_file({"emb_params": vector.detach().float().cpu().reshape(1, -1).contiguous()}, tmp,
                  metadata={"format": "personalvideo-token"})
        if backup:
            os.replace(emb, backup)
        os.replace(tmp, emb)
        save_adapter(adapter, paths["sia"], overwrite=True)
    except BaseException:
        for leftover in (tmp,) + (() if backup else (emb,)):
            if os.path.exists(leftover):
                os.unlink(leftover)
        if backup and os.path.exists(backup):
            os.replace(backup, emb)
        raise
    if backup and os.path.exists(backup):
        os.unlink(backup)
    return paths
