"""The Spatial Identity Adapter on Wan as peft's LoRA on diffusers' ``WanTransformer3DModel``, and back.

Targets: ``attn1.to_q/to_k/to_v`` (the joint space-time self-attention) of every block in ``blocks``, the
layers core Wan calls ``blocks.N.self_attn.q/k/v`` (:mod:`..sia.wan_targets`), and nothing else: never
``attn2`` (cross-attention), never the FFN or ``to_out``.  Inside the pack an adapter names its layers by
core's paths (``blocks.N.self_attn.q``), so an adapter read from any Wan file (:mod:`..sia.wan_file`: ours,
musubi-tuner's, diffusers / PEFT ``transformer.blocks.N.attn1.to_q.lora_A.weight``) loads here, and one
extracted here is saved as our Wan file (base ``wan``, the keys core's LoRA loaders map).  peft's scale is
``lora_alpha / r``, the file's ``alpha / rank``.
"""
from __future__ import annotations

import re

import torch

from ..sia.adapter import AdapterInfo, SIAAdapter
from ..sia.families import WAN
from ..sia.wan_targets import PROJECTIONS, target_path
from . import sia_peft
from .errors import EngineError

_TARGET = re.compile(r"^blocks\.(\d+)\.attn1\.to_([qkv])$")


def module_name(block: int, projection: str) -> str:
    return f"blocks.{block}.attn1.to_{projection}"


def path_of(name: str) -> str:
    """diffusers layer name -> the pack's Wan target path."""
    m = _TARGET.match(name)
    if m is None:
        raise EngineError(f"internal: {name} is not a Wan self-attention q/k/v layer")
    return target_path(int(m[1]), m[2])


def targets(transformer: torch.nn.Module) -> list:
    """The target layers (:class:`..sia.targets.Target`, core's paths) in block order, q, k, v in each."""
    from ..sia.targets import Target

    blocks = getattr(transformer, "blocks", None)
    if not blocks:
        raise EngineError("the model has no Wan blocks; --backbone wan needs a diffusers WanTransformer3DModel.")
    out = []
    for index, block in enumerate(blocks):
        for p in PROJECTIONS:
            layer = getattr(block.attn1, f"to_{p}")
            linear = getattr(layer, "base_layer", layer)
            out.append(Target(target_path(index, p), linear.in_features, linear.out_features, linear))
    return out


def attach(transformer: torch.nn.Module, rank: int, alpha: float, adapter: SIAAdapter | None = None) -> list:
    """peft's LoRA (adapter ``sia``) on the targets; ``adapter``'s weights loaded when given.  Only the LoRA
    is trainable afterwards.  Returns the layer names."""
    names = [module_name(i, p) for i in range(len(transformer.blocks)) for p in PROJECTIONS]
    sia_peft.inject(transformer, names, rank, alpha)
    if adapter is not None:
        load_weights(transformer, adapter)
    return names


def load_weights(transformer: torch.nn.Module, adapter: SIAAdapter) -> None:
    """``adapter`` (a Wan adapter: paths ``blocks.N.self_attn.q``) into the LoRA attached to ``transformer``."""
    if adapter.info.base != WAN:
        raise EngineError(f"the adapter {adapter.source} is for {adapter.info.base or 'SD1.5'}, not Wan: train one "
                          "on Wan (personalvideo train --backbone wan) or give a Wan adapter file.")
    sia_peft.copy_weights(transformer, adapter, {module_name(*_parts(p)): p for p in adapter.paths},
                          "Wan model")


def _parts(path: str) -> tuple:
    _, block, _, projection = path.split(".")
    return int(block), projection


def extract(transformer: torch.nn.Module, alpha: float, info: AdapterInfo) -> SIAAdapter:
    """Our Wan adapter (detached fp32 copies, ``info.base`` ``wan``) from the LoRA on ``transformer``."""
    info.base = WAN
    return sia_peft.extract_weights(transformer, path_of, alpha, info)
