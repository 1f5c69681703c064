"""Discovery of the adapter's target layers in a UNet, by module type.

Targets are the q, k and v projections of the self-attention (``attn1``) of
every transformer block that sits in a spatial transformer of the UNet: 48
linear layers in SD1.5.  Cross-attention (``attn2``), the feed-forward layers,
temporal ``time_stack`` blocks and AnimateDiff motion modules are never
targets: motion modules are not ``BasicTransformerBlock``s of a
``SpatialTransformer`` (AnimateDiff-Evolved uses its own attention classes).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import naming


@dataclass(frozen=True)
class Target:
    path: str            # ldm module path under diffusion_model
    in_features: int
    out_features: int
    module: torch.nn.Linear = field(compare=False, repr=False)


@dataclass
class Discovery:
    """What discovery found in one UNet, for logs and error messages."""

    targets: list
    spatial_transformers: int = 0
    transformer_blocks: int = 0
    cross_attention_blocks: int = 0           # blocks whose attn2 is left alone
    skipped_blocks: list = field(default_factory=list)  # (path, reason)

    @property
    def paths(self) -> list:
        return [t.path for t in self.targets]

    def by_path(self) -> dict:
        return {t.path: t for t in self.targets}

    def summary(self) -> str:
        text = (
            f"{len(self.targets)} self-attention q/k/v layers in {self.transformer_blocks} "
            f"transformer blocks of {self.spatial_transformers} spatial transformers "
            f"(cross-attention and motion modules untouched)"
        )
        if self.skipped_blocks:
            text += f"; skipped {len(self.skipped_blocks)}: " + ", ".join(
                f"{p} ({why})" for p, why in self.skipped_blocks[:4]
            )
        return text


def discover_targets(diffusion_model: torch.nn.Module) -> Discovery:
    from comfy.ldm.modules.attention import BasicTransformerBlock, SpatialTransformer

    found = Discovery(targets=[])
    for name, module in diffusion_model.named_modules():
        if not isinstance(module, SpatialTransformer):
            continue
        found.spatial_transformers += 1
        for index, block in enumerate(getattr(module, "transformer_blocks", ())):
            block_path = f"{name}.transformer_blocks.{index}"
            if not isinstance(block, BasicTransformerBlock):
                found.skipped_blocks.append((block_path, f"not a transformer block: {type(block).__name__}"))
                continue
            if getattr(block, "disable_self_attn", False):
                found.skipped_blocks.append((block_path, "attn1 is cross-attention in this block"))
                continue
            paths = [f"{block_path}.attn1.{p}" for p in naming.PROJECTIONS]
            if not naming.is_target_path(paths[0]):
                found.skipped_blocks.append((block_path, "outside the SD1.5 UNet layout"))
                continue
            layers = [getattr(block.attn1, p, None) for p in naming.PROJECTIONS]
            if not all(isinstance(layer, torch.nn.Linear) for layer in layers):
                found.skipped_blocks.append((block_path, "q/k/v are not linear layers"))
                continue
            found.transformer_blocks += 1
            if getattr(block, "attn2", None) is not None:
                found.cross_attention_blocks += 1
            for path, layer in zip(paths, layers):
                found.targets.append(Target(path, layer.in_features, layer.out_features, layer))
    return found
