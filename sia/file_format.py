"""Reading and writing SIA adapter files (.safetensors).

Tensors, kohya-style keys in diffusers naming so the stock LoraLoader and
diffusers' ``load_lora_weights`` take the same file:
    lora_unet_<module>.lora_down.weight   (rank x in)
    lora_unet_<module>.lora_up.weight     (out x rank)
    lora_unet_<module>.alpha              (scalar)
and, when the identity was trained with a token, its vector(s) under
``bundle_emb.<name>.string_to_param.*`` (the kohya "bundled embedding" key).
Header metadata (all strings): ``format`` = personalvideo-sia, ``format_version``,
``base`` (sd15, or wan for Wan adapters: keys from :mod:`.wan_keys`, read by :mod:`.wan_file`), ``rank``, ``alpha``, ``name``, ``trigger``, ``num_res_blocks`` and ``training`` (JSON of
the training settings, the record a reuse is decided by, the final similarity and the
independent score of the last training sample).

Reading validates every key, shape and value and refuses anything else with
an SIAError naming the file.  Files other tools wrote with ldm module names
(``lora_unet_input_blocks_1_1_...``) are read too.  Nothing is unpickled.
Writing goes through the pack's atomic writer (:mod:`.atomic_file`).
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import NamedTuple

import torch

from . import naming, wan_keys
from .adapter import AdapterInfo, SIAAdapter
from .atomic_file import atomic_write
from .errors import SIAError
from .families import FAMILIES, LABELS, SD15, WAN

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
        key = wan_keys.module_key(path) if adapter.info.base == WAN else naming.kohya_module_key(path, nrb)
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


_MAX_HEADER = 100_000_000  # bytes; the safetensors library's own limit
_ITEM_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "I32": 4, "I64": 8, "BOOL": 1}
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


class _Entry(NamedTuple):
    """A tensor as the file's header describes it, before any of its bytes is read."""

    dtype: str
    shape: tuple

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _refuse_unreadable(path: str, reason: str):
    """Raise the SIAError of a file that is not a readable .safetensors file (called in an ``except`` block)."""
    size = os.path.getsize(path)
    raise SIAError(
        f"{path} is not a readable .safetensors file ({reason}; {size} bytes). "
        "It may be truncated by an interrupted download or copy: get or train it again.") from None


def _entry(key: str, spec, data_bytes: int) -> _Entry:
    if not isinstance(spec, dict):
        raise ValueError(f"header entry {key!r} is not a tensor description")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if not isinstance(dtype, str) or not isinstance(shape, list) \
            or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"header entry {key!r} has no valid dtype and shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) for n in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes):
        raise ValueError(f"tensor {key!r} lies outside the file's {data_bytes} data bytes")
    entry = _Entry(dtype, tuple(shape))
    if dtype in _ITEM_BYTES and offsets[1] - offsets[0] != entry.numel * _ITEM_BYTES[dtype]:
        raise ValueError(f"tensor {key!r} has {offsets[1] - offsets[0]} bytes for shape {list(shape)} of {dtype}")
    return entry


def read_header(path: str):
    """(metadata, {key: _Entry}) from the file's header alone: no tensor data is read, so a large file of
    another kind (a checkpoint dropped into models/sia) is refused after reading a few kilobytes."""
    if not os.path.isfile(path):
        raise SIAError(f"SIA adapter file not found: {path}")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ValueError("shorter than a safetensors header")
            length = int.from_bytes(prefix, "little")
            if length > min(_MAX_HEADER, size - 8):
                raise ValueError(f"its first bytes announce a header of {length} bytes, which does not fit")
            header = json.loads(f.read(length).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("its header metadata is not a table of texts")
        data_bytes = size - 8 - length
        entries = {key: _entry(key, spec, data_bytes) for key, spec in header.items()}
    except (ValueError, UnicodeDecodeError) as e:   # JSONDecodeError is a ValueError
        _refuse_unreadable(path, str(e))
    return dict(metadata), entries


def _load_tensors(path: str, keys) -> dict:
    """The tensors ``keys`` of a file whose header passed every check."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in keys}
    except Exception as e:  # safetensors raises several types for damaged files
        _refuse_unreadable(path, f"{type(e).__name__}: {e}")


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
    base = metadata.get("base", SD15)
    if base not in FAMILIES:
        raise SIAError(f"{path} is an adapter for base model '{base}'; this pack applies adapters for "
                       f"{' and '.join(LABELS[f] for f in FAMILIES)} models only.")
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


def _group_keys(entries: dict, info: AdapterInfo, path: str):
    """{target: {suffix: key}} and the embedding's key (or None); SIAError for any key of another kind."""
    modules, embedding, unexpected = {}, None, []
    for key in entries:
        if _EMBEDDING_KEY.match(key):
            embedding = key
            continue
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        target = naming.parse_kohya_module_key(key[: -len(suffix)], info.num_res_blocks) if suffix else None
        if target is None:
            unexpected.append(key)
            continue
        parts = modules.setdefault(target, {})
        if suffix in parts:
            raise SIAError(f"{path}: layer {target} appears twice (under diffusers and ldm names).")
        parts[suffix] = key
    if unexpected:
        raise SIAError(
            f"{path}: {len(unexpected)} unexpected key(s), e.g. {sorted(unexpected)[:3]}. "
            "An SIA adapter holds LoRA weights for the q/k/v projections of the spatial self-attention "
            "only; this file is something else (a full LoRA or another model)."
        )
    if not modules:
        raise SIAError(f"{path} holds no adapter weights.")
    return modules, embedding


def _check_entry(key: str, entry: _Entry, ndim: int, path: str) -> None:
    if entry.dtype not in _FLOAT_DTYPES or len(entry.shape) != ndim:
        raise SIAError(f"{path}: {key} has shape {entry.shape} and dtype {entry.dtype}; "
                       f"expected a {ndim}-D floating-point tensor.")


def _finite(key: str, value: torch.Tensor, path: str) -> torch.Tensor:
    if not torch.isfinite(value).all():
        raise SIAError(f"{path}: {key} contains NaN or infinite values; the adapter is broken (retrain it).")
    return value.float()


def check_pair(entries: dict, target: str, down_key: str, up_key: str, alpha_key, path: str) -> int:
    """One layer's down/up (and alpha, where the file has one) checked on the header's shapes: matrices of one
    rank on a square projection, alpha a single number. Its rank."""
    d, u = entries[down_key], entries[up_key]
    _check_entry(down_key, d, 2, path)
    _check_entry(up_key, u, 2, path)
    if alpha_key is not None:
        a = entries[alpha_key]
        if a.numel != 1:
            raise SIAError(f"{path}: {alpha_key} has shape {a.shape}; alpha must be a single number.")
        _check_entry(alpha_key, a, len(a.shape), path)
    if d.shape[0] != u.shape[1]:
        raise SIAError(f"{path}: {down_key} has rank {d.shape[0]} but {up_key} has rank {u.shape[1]}.")
    if d.shape[1] != u.shape[0]:
        raise SIAError(f"{path}: layer {target} maps {d.shape[1]} to {u.shape[0]} features; "
                       "self-attention projections are square.")
    return d.shape[0]


def _check_layers(modules: dict, entries: dict, info: AdapterInfo, path: str) -> None:
    """Every layer complete, of one rank and square, checked on the header's shapes."""
    ranks = set()
    for target, parts in sorted(modules.items()):
        missing = [s for s in _SUFFIXES if s not in parts]
        if missing:
            raise SIAError(f"{path}: layer {naming.to_diffusers(target, info.num_res_blocks)} lacks {missing}.")
        ranks.add(check_pair(entries, target, *(parts[s] for s in _SUFFIXES), path))
    blocks = {}
    for target in modules:
        blocks.setdefault(naming.block_of(target), set()).add(target.rsplit(".", 1)[1])
    incomplete = sorted(b for b, p in blocks.items() if p != set(naming.PROJECTIONS))
    if incomplete:
        raise SIAError(f"{path}: block {incomplete[0]} lacks some of to_q/to_k/to_v; the file is incomplete.")
    if len(ranks) != 1:
        raise SIAError(f"{path}: layers disagree on rank {sorted(ranks)}; an SIA adapter has one rank and one "
                       "alpha.")


def load_adapter(path: str) -> SIAAdapter:
    """Read and validate an adapter file; raises SIAError naming the file on any problem.

    The header (keys, shapes, dtypes, metadata) is checked before any tensor is read."""
    path = os.path.abspath(path)
    metadata, entries = read_header(path)
    from .wan_file import is_wan_file, load_wan_adapter

    if is_wan_file(metadata, entries):
        return load_wan_adapter(path, metadata, entries)
    info = _info_from_metadata(metadata, path)
    modules, embedding_key = _group_keys(entries, info, path)
    _check_layers(modules, entries, info, path)
    if embedding_key is not None:
        _check_entry(embedding_key, entries[embedding_key], len(entries[embedding_key].shape), path)
    tensors = _load_tensors(path, entries)
    down, up, alphas = {}, {}, set()
    for target, parts in sorted(modules.items()):
        down[target] = _finite(parts[".lora_down.weight"], tensors[parts[".lora_down.weight"]], path)
        up[target] = _finite(parts[".lora_up.weight"], tensors[parts[".lora_up.weight"]], path)
        alphas.add(float(_finite(parts[".alpha"], tensors[parts[".alpha"]].reshape(()), path)))
    if len(alphas) != 1:
        raise SIAError(f"{path}: layers disagree on alpha {sorted(alphas)}; an SIA adapter has one rank and one "
                       "alpha.")
    rank = int(next(iter(down.values())).shape[0])
    if "rank" in metadata and _meta_number(metadata, "rank", int, rank, path) != rank:
        raise SIAError(f"{path}: header says rank {metadata['rank']} but the weights have rank {rank}.")
    embedding = None
    if embedding_key is not None:
        embedding = _finite(embedding_key, tensors[embedding_key], path)
    return SIAAdapter(down, up, alphas.pop(), info, source=path, embedding=embedding)
