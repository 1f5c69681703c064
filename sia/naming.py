"""Names of the adapter's target layers.

Inside the pack a target is named by its module path under the UNet
(``diffusion_model``), in ComfyUI's ldm layout, e.g.
``input_blocks.1.1.transformer_blocks.0.attn1.to_q``.  Files use kohya-style
keys in diffusers naming (``lora_unet_down_blocks_0_attentions_0_transformer_
blocks_0_attn1_to_q``), which the stock LoraLoader and diffusers both map; files
other tools wrote with ldm names (``lora_unet_input_blocks_1_1_...``) are read too.

Converting between the two layouts needs the number of residual blocks per UNet
level (2 for SD1.5); every level must have the same number.
"""
from __future__ import annotations

import re

KOHYA_PREFIX = "lora_unet_"
PROJECTIONS = ("to_q", "to_k", "to_v")

_LDM_PATH = re.compile(
    r"^(?:(?P<kind>input_blocks|output_blocks)\.(?P<n>\d+)|(?P<mid>middle_block))"
    r"\.1\.transformer_blocks\.(?P<t>\d+)\.attn1\.(?P<p>to_[qkv])$"
)
_DIFFUSERS_KEY = re.compile(
    r"^(?:(?P<kind>down_blocks|up_blocks)_(?P<level>\d+)_attentions_(?P<j>\d+)|(?P<mid>mid_block_attentions_0))"
    r"_transformer_blocks_(?P<t>\d+)_attn1_(?P<p>to_[qkv])$"
)
_LDM_KEY = re.compile(
    r"^(?:(?P<kind>input_blocks|output_blocks)_(?P<n>\d+)|(?P<mid>middle_block))"
    r"_1_transformer_blocks_(?P<t>\d+)_attn1_(?P<p>to_[qkv])$"
)


def is_target_path(path: str) -> bool:
    return _LDM_PATH.match(path) is not None


def uniform_res_blocks(num_res_blocks) -> int:
    """The per-level residual block count as one int, or ValueError if levels differ."""
    if isinstance(num_res_blocks, int):
        return num_res_blocks
    values = set(int(v) for v in num_res_blocks)
    if len(values) != 1:
        raise ValueError(f"UNet levels have different residual block counts {list(num_res_blocks)}")
    return values.pop()


def unet_order(path: str) -> tuple:
    """Sort key of target paths in the UNet's own order (encoder, middle, decoder blocks; then the transformer
    block; then q, k, v): the order the layers are found in a ComfyUI UNet, whatever layout names them."""
    m = _LDM_PATH.match(path)
    if m is None:
        raise ValueError(f"not a spatial self-attention projection path: {path}")
    part = 1 if m["mid"] else (0 if m["kind"] == "input_blocks" else 2)
    return part, int(m["n"] or 0), int(m["t"]), PROJECTIONS.index(m["p"])


def to_diffusers(path: str, num_res_blocks: int = 2) -> str:
    """ldm target path -> diffusers module path (dots)."""
    m = _LDM_PATH.match(path)
    if m is None:
        raise ValueError(f"not a spatial self-attention projection path: {path}")
    tail = f"transformer_blocks.{m['t']}.attn1.{m['p']}"
    if m["mid"]:
        return f"mid_block.attentions.0.{tail}"
    n, per_level = int(m["n"]), num_res_blocks + 1
    if m["kind"] == "input_blocks":
        level, j = divmod(n - 1, per_level)
        if n < 1 or j >= num_res_blocks:
            raise ValueError(f"{path} is a downsampler slot, not an attention block")
        return f"down_blocks.{level}.attentions.{j}.{tail}"
    level, j = divmod(n, per_level)
    return f"up_blocks.{level}.attentions.{j}.{tail}"


def from_diffusers(name: str, num_res_blocks: int = 2) -> str:
    """diffusers module path (dots or underscores) -> ldm target path."""
    m = _DIFFUSERS_KEY.match(name.replace(".", "_"))
    if m is None:
        raise ValueError(f"not a spatial self-attention projection name: {name}")
    tail = f"1.transformer_blocks.{m['t']}.attn1.{m['p']}"
    if m["mid"]:
        return f"middle_block.{tail}"
    level, j, per_level = int(m["level"]), int(m["j"]), num_res_blocks + 1
    if m["kind"] == "down_blocks":
        return f"input_blocks.{1 + level * per_level + j}.{tail}"
    return f"output_blocks.{level * per_level + j}.{tail}"


def kohya_module_key(path: str, num_res_blocks: int = 2) -> str:
    """ldm target path -> the kohya module key written to files."""
    return KOHYA_PREFIX + to_diffusers(path, num_res_blocks).replace(".", "_")


def parse_kohya_module_key(key: str, num_res_blocks: int = 2) -> str | None:
    """kohya module key (diffusers or ldm style) -> ldm target path, None if not a target."""
    if not key.startswith(KOHYA_PREFIX):
        return None
    body = key[len(KOHYA_PREFIX):]
    if _DIFFUSERS_KEY.match(body):
        return from_diffusers(body, num_res_blocks)
    m = _LDM_KEY.match(body)
    if m is None:
        return None
    head = "middle_block" if m["mid"] else f"{m['kind']}.{m['n']}"
    return f"{head}.1.transformer_blocks.{m['t']}.attn1.{m['p']}"


def block_of(path: str) -> str:
    """The transformer block a target belongs to (its path without .attn1.to_x)."""
    return path.rsplit(".attn1.", 1)[0]
