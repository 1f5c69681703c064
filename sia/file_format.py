"""Reading and writing SIA adapter files (.safetensors).

Tensors, kohya-style keys in diffusers naming so the stock LoraLoader and
diffusers' ``load_lora_weights`` take the same file:
    lora_unet_<module>.lora_down.weight   (rank x in)
    lora_unet_<module>.lora_up.weight     (out x rank)
    lora_unet_<module>.alpha              (scalar)
and, when the identity was trained with a token, its vector(s) under
``bundle_emb.<name>.string_to_param.*`` (the kohya "bundled embedding" key).
Header metadata (all strings): ``format`` = personalvideo-sia, ``format_version``,
``base`` (sd15), ``rank``, ``alpha``, ``name``, ``trigger``, ``num_res_blocks`` and ``training`` (JSON of
the training settings, the record a reuse is decided by, the final similarity and the
independent score of the last training sample).

Reading validates every key, shape and value and refuses anything else with
an SIAError naming the file.  Files other tools wrote with ldm module names
(``lora_unet_input_blocks_1_1_...``) are read too.  Nothing is unpickled.
Writing goes through the pack's atomic writer (:mod:`.atomic_file`).
"""
from __future__ import annotations

import json
import os
import re

import torch

from . import naming
from .adapter import AdapterInfo, SIAAdapter
from .atomic_file import atomic_write
from .errors import SIAError

FORMAT_NAME = "personalvideo-sia"
FORMAT_VERSION = 1
_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
_EMBEDDING_KEY = re.compile(r"^bundle_emb\.(?P<name>[^.]+)\.string_to_param\.\*$")


def _embedding_key(name: str) -> str:
    return f"bundle_emb.{name or 'identity'}.string_to_param.*"


def adapter_to_tensors(adapter: SIAAdapter) -> dict:
    nrb = adapter.info.num_res_blocks
    tensors = {}
    for path in adapter.paths:
        key = naming.kohya_module_key(path, nrb)
        tensors[key + ".lora_down.weight"] = adapter.down[path].detach().float().cpu().contiguous()
        tensors[key + ".lora_up.weight"] = adapter.up[path].detach().float().cpu().contiguous()
        tensors[key + ".alpha"] = torch.tensor(float(adapter.alpha))
    if adapter.embedding is not None:
        tensors[_embedding_key(adapter.info.name)] = adapter.embedding.detach().float().cpu().contiguous()
    return tensors


def adapter_metadata(adapter: SIAAdapter) -> dict:
    info = adapter.info
    return {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "base": info.base,
        "rank": str(adapter.rank),
        "alpha": repr(float(adapter.alpha)),
        "name": info.name,
        "trigger": info.trigger,
        "num_res_blocks": str(info.num_res_blocks),
        "training": json.dumps(info.training, sort_keys=True),
    }


def save_adapter(adapter: SIAAdapter, path: str, overwrite: bool = True) -> str:
    """Write ``adapter`` to ``path`` atomically; returns the path."""
    from safetensors.torch import save_file

    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise SIAError(f"{path} already exists; choose another name or allow overwriting.")
    return atomic_write(path, lambda tmp: save_file(adapter_to_tensors(adapter), tmp,
                                                    metadata=adapter_metadata(adapter)))


def _read(path: str):
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise SIAError(f"SIA adapter file not found: {path}")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SIAError:
        raise
    except Exception as e:  # safetensors raises several types for damaged files
        size = os.path.getsize(path)
        raise SIAError(
            f"{path} is not a readable .safetensors file ({type(e).__name__}: {e}; {size} bytes). "
            "It may be truncated by an interrupted download or copy: get or train it again."
        ) from None
    return metadata, tensors


def _meta_number(metadata: dict, key: str, cast, default, path: str):
    if key not in metadata:
        return default
    try:
        return cast(metadata[key])
    except ValueError:
        raise SIAError(f"{path}: header field '{key}' is not a number ({metadata[key]!r}).") from None


def _info_from_metadata(metadata: dict, path: str) -> AdapterInfo:
    fmt = metadata.get("format")
    if fmt is not None and fmt != FORMAT_NAME:
        raise SIAError(f"{path}: header says format '{fmt}', not a {FORMAT_NAME} file.")
    version = _meta_number(metadata, "format_version", int, FORMAT_VERSION, path)
    if version > FORMAT_VERSION:
        raise SIAError(
            f"{path} was written by a newer ComfyUI-PersonalVideo (format version {version}; "
            f"this one reads up to {FORMAT_VERSION}). Update the pack."
        )
    base = metadata.get("base", "sd15")
    if base != "sd15":
        raise SIAError(f"{path} is an adapter for base model '{base}'; this pack applies SD1.5-family adapters only.")
    try:
        training = json.loads(metadata.get("training", "{}"))
    except json.JSONDecodeError:
        raise SIAError(f"{path}: header field 'training' is not valid JSON.") from None
    return AdapterInfo(
        name=metadata.get("name", os.path.splitext(os.path.basename(path))[0]),
        trigger=metadata.get("trigger", ""),
        base=base,
        num_res_blocks=_meta_number(metadata, "num_res_blocks", int, 2, path),
        training=training if isinstance(training, dict) else {},
    )


def _group_keys(tensors: dict, info: AdapterInfo, path: str):
    modules, embedding, unexpected = {}, None, []
    for key, value in tensors.items():
        if _EMBEDDING_KEY.match(key):
            embedding = value
            continue
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        target = naming.parse_kohya_module_key(key[: -len(suffix)], info.num_res_blocks) if suffix else None
        if target is None:
            unexpected.append(key)
            continue
        parts = modules.setdefault(target, {})
        if suffix in parts:
            raise SIAError(f"{path}: layer {target} appears twice (under diffusers and ldm names).")
        parts[suffix] = (key, value)
    if unexpected:
        raise SIAError(
            f"{path}: {len(unexpected)} unexpected key(s), e.g. {sorted(unexpected)[:3]}. "
            "An SIA adapter holds LoRA weights for the q/k/v projections of the spatial self-attention "
            "only; this file is something else (a full LoRA or another model)."
        )
    if not modules:
        raise SIAError(f"{path} holds no adapter weights.")
    return modules, embedding


def _check_tensor(key: str, value: torch.Tensor, ndim: int, path: str) -> torch.Tensor:
    if not value.is_floating_point() or value.dim() != ndim:
        raise SIAError(f"{path}: {key} has shape {tuple(value.shape)} and dtype {value.dtype}; "
                       f"expected a {ndim}-D floating-point tensor.")
    if not torch.isfinite(value).all():
        raise SIAError(f"{path}: {key} contains NaN or infinite values; the adapter is broken (retrain it).")
    return value.float()


def load_adapter(path: str) -> SIAAdapter:
    """Read and validate an adapter file; raises SIAError naming the file on any problem."""
    path = os.path.abspath(path)
    metadata, tensors = _read(path)
    info = _info_from_metadata(metadata, path)
    modules, embedding = _group_keys(tensors, info, path)
    down, up, alphas, ranks = {}, {}, set(), set()
    for target, parts in sorted(modules.items()):
        missing = [s for s in _SUFFIXES if s not in parts]
        if missing:
            raise SIAError(f"{path}: layer {naming.to_diffusers(target, info.num_res_blocks)} lacks {missing}.")
        d = _check_tensor(parts[".lora_down.weight"][0], parts[".lora_down.weight"][1], 2, path)
        u = _check_tensor(parts[".lora_up.weight"][0], parts[".lora_up.weight"][1], 2, path)
        if parts[".alpha"][1].numel() != 1:
            raise SIAError(f"{path}: {parts['.alpha'][0]} has shape {tuple(parts['.alpha'][1].shape)}; "
                           "alpha must be a single number.")
        a = _check_tensor(parts[".alpha"][0], parts[".alpha"][1].reshape(()), 0, path)
        if d.shape[0] != u.shape[1]:
            raise SIAError(f"{path}: {parts['.lora_down.weight'][0]} has rank {d.shape[0]} but "
                           f"{parts['.lora_up.weight'][0]} has rank {u.shape[1]}.")
        if d.shape[1] != u.shape[0]:
            raise SIAError(f"{path}: layer {target} maps {d.shape[1]} to {u.shape[0]} features; "
                           "self-attention projections are square.")
        down[target], up[target] = d, u
        alphas.add(float(a))
        ranks.add(int(d.shape[0]))
    blocks = {}
    for target in down:
        blocks.setdefault(naming.block_of(target), set()).add(target.rsplit(".", 1)[1])
    incomplete = sorted(b for b, p in blocks.items() if p != set(naming.PROJECTIONS))
    if incomplete:
        raise SIAError(f"{path}: block {incomplete[0]} lacks some of to_q/to_k/to_v; the file is incomplete.")
    if len(ranks) != 1 or len(alphas) != 1:
        raise SIAError(f"{path}: layers disagree on rank {sorted(ranks)} or alpha {sorted(alphas)}; "
                       "an SIA adapter has one rank and one alpha.")
    rank = ranks.pop()
    if "rank" in metadata and _meta_number(metadata, "rank", int, rank, path) != rank:
        raise SIAError(f"{path}: header says rank {metadata['rank']} but the weights have rank {rank}.")
    if embedding is not None:
        embedding = _check_tensor(_embedding_key(info.name), embedding, embedding.dim(), path)
    return SIAAdapter(down, up, alphas.pop(), info, source=path, embedding=embedding)
