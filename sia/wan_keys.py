"""Key names of Wan adapter files: ours (which core's LoRA loader reads) and the layouts other trainers write.

Inside the pack a Wan target is named by its module path under the diffusion
model, ``blocks.N.self_attn.q`` (k, v).  Our files use kohya-style keys on that
path, the form ComfyUI core maps for every diffusion model (``comfy.lora.
model_lora_keys_unet``: ``lora_unet_<path with _>`` -> ``diffusion_model.<path>.
weight``), so the stock ``LoraLoaderModelOnly`` and core's hook LoRA nodes load
the same file:

    lora_unet_blocks_0_self_attn_q.lora_down.weight   (rank x dim)
    lora_unet_blocks_0_self_attn_q.lora_up.weight     (dim x rank)
    lora_unet_blocks_0_self_attn_q.alpha              (scalar)

Read as well (Load SIA Adapter imports them):

- musubi-tuner's Wan LoRA files: the same ``lora_unet_blocks_N_self_attn_q`` keys;
- ComfyUI-style keys on the module path: ``diffusion_model.blocks.N.self_attn.q.lora_down.weight`` /
  ``.lora_up.weight`` or ``.lora_A.weight`` / ``.lora_B.weight`` (with or without the ``diffusion_model.``
  prefix);
- diffusers / PEFT (``WanTransformer3DModel``): ``transformer.blocks.N.attn1.to_q.lora_A.weight`` (rank x
  dim) and ``.lora_B.weight`` (dim x rank), usually without alpha (then alpha = rank: scale 1).

Roles: ``down`` (rank x in), ``up`` (out x rank), ``alpha``.
"""
from __future__ import annotations

import re

KOHYA_PREFIX = "lora_unet_"
_ROLE = {"lora_down.weight": "down", "lora_A.weight": "down", "lora_up.weight": "up", "lora_B.weight": "up",
         "alpha": "alpha"}
_SUFFIX = r"(?P<suffix>lora_down\.weight|lora_up\.weight|lora_A\.weight|lora_B\.weight|alpha)"
_PATTERNS = (
    re.compile(r"^lora_unet_blocks_(?P<n>\d+)_self_attn_(?P<p>[qkv])\." + _SUFFIX + "$"),          # ours, musubi
    re.compile(r"^(?:diffusion_model\.)?blocks\.(?P<n>\d+)\.self_attn\.(?P<p>[qkv])\." + _SUFFIX + "$"),
    re.compile(r"^(?:transformer\.)?blocks\.(?P<n>\d+)\.attn1\.to_(?P<p>[qkv])\." + _SUFFIX + "$"),  # diffusers
)
_WAN_LOOKING = re.compile(r"^(?:lora_unet_blocks_\d+_|(?:diffusion_model\.|transformer\.)?blocks\.\d+\.)")


def module_key(path: str) -> str:
    """Target path (``blocks.0.self_attn.q``) -> the module key our files use."""
    return KOHYA_PREFIX + path.replace(".", "_")


def parse_key(key: str):
    """A file key -> (target path, role) for a self-attention q/k/v LoRA tensor of any known layout, else None."""
    for pattern in _PATTERNS:
        m = pattern.match(key)
        if m is not None:
            return f"blocks.{int(m['n'])}.self_attn.{m['p']}", _ROLE[m["suffix"]]
    return None


def looks_like_wan(key: str) -> bool:
    """Whether a key names a layer of a Wan block in one of the layouts above (a target or not)."""
    return _WAN_LOOKING.match(key) is not None


def layout_of(keys) -> str:
    """The layout a set of keys was written in, for messages."""
    keys = list(keys)
    if any(k.startswith("transformer.") or ".attn1." in k for k in keys):
        return "diffusers"
    if any(k.startswith(KOHYA_PREFIX) for k in keys):
        return "kohya / musubi-tuner"
    return "ComfyUI"
