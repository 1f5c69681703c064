"""Reading Wan adapter files: ours, and the musubi-tuner, ComfyUI and diffusers layouts (:mod:`.wan_keys`).

A file is read as a Wan adapter when its header says ``base`` = ``wan`` or its
keys name Wan blocks.  Every key must be a LoRA tensor on a ``self_attn`` q/k/v
of a Wan block; a file with other layers (a full LoRA on cross-attention or the
FFN as well) is refused with a message saying to load it with
``LoraLoaderModelOnly`` (and the core hooks route to gate it, docs/wan.md).
Each block must have all of q, k and v; all layers one rank. An adapter trained with a token carries it
under the same key as on SD1.5 (``bundle_emb.<name>.string_to_param.*``, one umT5 vector).  Layers with
different alphas are brought to one alpha by scaling their up weights (the
delta ``up(down(x)) * alpha / rank`` is unchanged); a file without alphas
(diffusers / PEFT) gets alpha = rank, scale 1, as diffusers applies it.

Writing goes through :func:`.file_format.save_adapter` (keys from :func:`.wan_keys.module_key`).
"""
from __future__ import annotations

from . import wan_keys
from .adapter import AdapterInfo, SIAAdapter
from .errors import SIAError
from .families import WAN
from .wan_targets import PROJECTIONS
from .file_format import (_EMBEDDING_KEY, _check_entry, _finite, _info_from_metadata, _load_tensors, _meta_number,
                          check_pair)

_FULL_LORA_HINT = ("An SIA adapter for Wan holds LoRA weights for the q/k/v projections of the self-attention "
                   "(self_attn / attn1) only. Load a full LoRA with the core node 'LoraLoaderModelOnly' instead "
                   "(to gate it to the last quarter with core nodes, see docs/wan.md, 'The core hooks route').")


def is_wan_file(metadata: dict, entries: dict) -> bool:
    if metadata.get("base") == WAN:
        return True
    if "base" in metadata:
        return False
    return any(wan_keys.looks_like_wan(k) for k in entries)


def _group(entries: dict, path: str) -> tuple:
    """{target path: {role: key}} and the identity token's key (or None); SIAError for keys of another kind."""
    layers, foreign, embedding = {}, [], None
    for key in entries:
        if _EMBEDDING_KEY.match(key):   # the identity token (a umT5 vector) of an adapter trained with one
            embedding = key
            continue
        parsed = wan_keys.parse_key(key)
        if parsed is None:
            foreign.append(key)
            continue
        target, role = parsed
        roles = layers.setdefault(target, {})
        if role in roles:
            raise SIAError(f"{path}: layer {target} appears twice ({roles[role]} and {key}).")
        roles[role] = key
    if foreign:
        raise SIAError(f"{path}: {len(foreign)} key(s) that are not self-attention q/k/v LoRA weights of a Wan "
                       f"block, e.g. {sorted(foreign)[:3]}. " + _FULL_LORA_HINT)
    if not layers:
        raise SIAError(f"{path} holds no adapter weights.")
    return layers, embedding


def _check(layers: dict, entries: dict, path: str) -> None:
    ranks = set()
    for target, roles in sorted(layers.items()):
        missing = [r for r in ("down", "up") if r not in roles]
        if missing:
            raise SIAError(f"{path}: layer {target} lacks its {' and '.join(missing)} weight.")
        ranks.add(check_pair(entries, target, roles["down"], roles["up"], roles.get("alpha"), path))
    blocks = {}
    for target in layers:
        blocks.setdefault(target.rsplit(".", 1)[0], set()).add(target.rsplit(".", 1)[1])
    incomplete = sorted((b for b, p in blocks.items() if p != set(PROJECTIONS)),
                        key=lambda b: int(b.split(".")[1]))
    if incomplete:
        raise SIAError(f"{path}: {incomplete[0]} lacks some of q/k/v; an SIA adapter covers q, k and v of every "
                       "block it adapts.")
    if len(ranks) != 1:
        raise SIAError(f"{path}: layers disagree on rank {sorted(ranks)}; an SIA adapter has one rank.")


def load_wan_adapter(path: str, metadata: dict, entries: dict) -> SIAAdapter:
    """The adapter in a Wan file whose header (``metadata``, ``entries``) has been read."""
    if "base" not in metadata:
        metadata = dict(metadata, base=WAN)
    info: AdapterInfo = _info_from_metadata(metadata, path)
    layers, embedding_key = _group(entries, path)
    _check(layers, entries, path)
    if embedding_key is not None:
        _check_entry(embedding_key, entries[embedding_key], len(entries[embedding_key].shape), path)
    tensors = _load_tensors(path, [k for roles in layers.values() for k in roles.values()]
                            + ([embedding_key] if embedding_key else []))
    down, up, alphas = {}, {}, {}
    for target, roles in layers.items():
        down[target] = _finite(roles["down"], tensors[roles["down"]], path).float()
        up[target] = _finite(roles["up"], tensors[roles["up"]], path).float()
        rank = down[target].shape[0]
        alphas[target] = (float(_finite(roles["alpha"], tensors[roles["alpha"]].reshape(()), path))
                          if "alpha" in roles else float(rank))
    alpha = alphas[min(alphas)]
    for target, a in alphas.items():
        if a != alpha:
            up[target] = up[target] * (a / alpha)
    rank = int(next(iter(down.values())).shape[0])
    if "rank" in metadata and _meta_number(metadata, "rank", int, rank, path) != rank:
        raise SIAError(f"{path}: header says rank {metadata['rank']} but the weights have rank {rank}.")
    if metadata.get("format") is None:
        info.training = dict(info.training, imported_from=wan_keys.layout_of(entries))
    embedding = None if embedding_key is None else _finite(embedding_key, tensors[embedding_key], path)
    return SIAAdapter(down, up, alpha, info, source=path, embedding=embedding)
