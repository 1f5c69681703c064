"""Discovery of the adapter's target layers in a Wan diffusion model (ComfyUI core's ``WanModel``).

Targets are the q, k and v projections of the self-attention (``self_attn``) of
every ``WanAttentionBlock`` in the model's main stack ``blocks``: 3 x 30 = 90
linear layers in Wan 2.1 1.3B and Wan 2.2 TI2V 5B, 3 x 40 = 120 in the 14B models
(Wan 2.1 14B, each Wan 2.2 A14B expert).  The cross-attention (``cross_attn``,
text and, for i2v, image keys), the feed-forward layers (``ffn``), the output
projection ``o`` and any side stack (VACE's ``vace_blocks``, audio or camera
adapters) are never targets.

Wan has no separate spatial attention: ``self_attn`` attends jointly over every
token of the video (frames x height x width patches, with a 3D rotary position
code).  Its q/k/v are the layers that play the part the spatial self-attention
plays in the SD1.5 UNet (see docs/wan.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .targets import Discovery, Target

PROJECTIONS = ("q", "k", "v")


@dataclass
class WanDiscovery(Discovery):
    """What discovery found in one Wan model."""

    family: str = "wan"

    def summary(self) -> str:
        text = (f"{len(self.targets)} self-attention q/k/v layers in {self.transformer_blocks} Wan attention "
                f"blocks (joint space-time self-attention; cross-attention and FFN untouched)")
        if self.skipped_blocks:
            text += f"; skipped {len(self.skipped_blocks)}: " + ", ".join(
                f"{p} ({why})" for p, why in self.skipped_blocks[:4])
        return text


def target_path(block: int, projection: str) -> str:
    return f"blocks.{block}.self_attn.{projection}"


def discover_wan_targets(diffusion_model: torch.nn.Module) -> WanDiscovery:
    from comfy.ldm.wan.model import WanAttentionBlock

    found = WanDiscovery(targets=[])
    for index, block in enumerate(getattr(diffusion_model, "blocks", ())):
        block_path = f"blocks.{index}"
        if not isinstance(block, WanAttentionBlock):
            found.skipped_blocks.append((block_path, f"not a Wan attention block: {type(block).__name__}"))
            continue
        layers = [getattr(block.self_attn, p, None) for p in PROJECTIONS]
        if not all(isinstance(layer, torch.nn.Linear) for layer in layers):
            found.skipped_blocks.append((block_path, "self_attn q/k/v are not linear layers"))
            continue
        found.transformer_blocks += 1
        found.cross_attention_blocks += 1
        for p, layer in zip(PROJECTIONS, layers):
            found.targets.append(Target(target_path(index, p), layer.in_features, layer.out_features, layer))
    return found
