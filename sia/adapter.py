"""The Spatial Identity Adapter: low-rank updates for the target layers.

For a target layer W (in -> out) the adapter holds ``down`` (rank x in) and
``up`` (out x rank); its output is ``W x + up(down(x)) * strength * alpha / rank``.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from . import naming
from .errors import SIAError

BASE_FAMILY = "sd15"
DEFAULT_START_PERCENT = 0.75
RETRAIN_HINT = ("Generate with the SD1.5 checkpoint the identity was trained on, or train it again on this one "
                "with 'Train PersonalVideo Identity' (workflow 01_train_identity).")
WAN_HINT = ("Apply it to the Wan model of the size it was made for (an adapter for Wan 2.1 1.3B does not fit a 14B "
            "model); for Wan 2.2 A14B, to the low-noise expert.")


@dataclass
class AdapterInfo:
    """Descriptive metadata kept with an adapter (and in its file header)."""

    name: str = ""
    trigger: str = ""
    base: str = BASE_FAMILY
    num_res_blocks: int = 2
    training: dict = field(default_factory=dict)


@dataclass
class SIAAdapter:
    down: dict            # target path -> tensor (rank, in)
    up: dict              # target path -> tensor (out, rank)
    alpha: float
    info: AdapterInfo = field(default_factory=AdapterInfo)
    source: str = "(in memory)"
    embedding: torch.Tensor | None = None   # the identity token's vector(s), if trained with one

    @property
    def rank(self) -> int:
        return int(next(iter(self.down.values())).shape[0])

    @property
    def paths(self) -> list:
        return sorted(self.down)

    def scale(self, strength: float) -> float:
        return float(strength) * self.alpha / self.rank

    def parameters(self) -> list:
        return [t for p in self.paths for t in (self.down[p], self.up[p])]

    @classmethod
    def initialise(cls, targets, rank: int = 4, alpha: float | None = None, seed: int = 0,
                   info: AdapterInfo | None = None) -> "SIAAdapter":
        """A fresh trainable adapter: down random (Kaiming-uniform), up zero, so it starts as a no-op."""
        if rank < 1:
            raise SIAError(f"rank must be at least 1 (got {rank})")
        generator = torch.Generator().manual_seed(seed)
        down, up = {}, {}
        for t in targets:
            bound = 1.0 / math.sqrt(t.in_features)
            d = (torch.rand(rank, t.in_features, generator=generator) * 2 - 1) * bound
            down[t.path] = torch.nn.Parameter(d)
            up[t.path] = torch.nn.Parameter(torch.zeros(t.out_features, rank))
        return cls(down, up, float(alpha if alpha is not None else rank), info or AdapterInfo())

    def detached_copy(self) -> "SIAAdapter":
        """A copy that shares nothing with this adapter: its weights, embedding and info (the training record
        and history included) can change without changing these."""
        return SIAAdapter(
            {p: t.detach().clone() for p, t in self.down.items()},
            {p: t.detach().clone() for p, t in self.up.items()},
            self.alpha, copy.deepcopy(self.info), self.source,
            None if self.embedding is None else self.embedding.detach().clone(),
        )

    def _hint(self) -> str:
        return WAN_HINT if self.info.base == "wan" else RETRAIN_HINT

    def check_against(self, discovery) -> None:
        """Raise SIAError unless the adapter covers exactly the discovered targets with matching shapes."""
        found = discovery.by_path()
        where = f"SIA adapter {self.source}"
        if not found:
            raise SIAError(
                "This MODEL has no spatial self-attention layers of the SD1.5 UNet layout "
                f"({discovery.summary()}). SIA adapters work with SD1.5 / AnimateDiff models only; "
                "load an SD1.5-family checkpoint."
            )
        missing = sorted(set(found) - set(self.down))
        extra = sorted(set(self.down) - set(found))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"{len(missing)} layer(s) of this MODEL are missing from the adapter, e.g. {missing[0]}")
            if extra:
                parts.append(f"{len(extra)} adapter layer(s) do not exist in this MODEL, e.g. {extra[0]}")
            raise SIAError(
                f"{where} does not fit this MODEL: " + "; ".join(parts)
                + f". It was made for another base model (the file says '{self.info.base}', {len(self.down)} "
                f"layers; this MODEL has {len(found)}). " + self._hint()
            )
        for path in self.paths:
            t = found[path]
            want_down, want_up = (self.rank, t.in_features), (t.out_features, self.rank)
            if tuple(self.down[path].shape) != want_down or tuple(self.up[path].shape) != want_up:
                name = path if self.info.base == "wan" else naming.to_diffusers(path, self.info.num_res_blocks)
                raise SIAError(
                    f"{where} does not fit this MODEL: layer {name} "
                    f"is {t.in_features}->{t.out_features} in the MODEL but "
                    f"{self.down[path].shape[1]}->{self.up[path].shape[0]} in the adapter. "
                    f"It was made for another base model (the file says '{self.info.base}'). " + self._hint()
                )
