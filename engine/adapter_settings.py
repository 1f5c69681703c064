"""Stage-2 settings and history of the engine, field for field the nodes' (:mod:`..training.sia_trainer`).

That module imports ComfyUI's samplers at import time, so the engine cannot import
its ``SIATrainSettings`` outside ComfyUI; these mirror it (same names, same defaults,
same JSON in the adapter file), and a test holds them equal.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..training import precision as amp
from .errors import EngineError


@dataclass
class AdapterSettings:
    iterations: int = 400
    lr: float = 1e-4
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    reg_lambda: float = 1e-2
    steps: int = 4
    scheduler: str = "sgm_uniform"
    frames: int = 16
    width: int = 512
    height: int = 512
    seed: int = 0
    max_no_face_fraction: float = 0.5
    no_face_check_after: int = 10
    gradient_checkpointing: bool = True
    precision: str = "auto"

    def check(self) -> None:
        if self.iterations < 1:
            raise EngineError(f"--sia-iterations must be at least 1 (got {self.iterations}).")
        if self.steps < 2:
            raise EngineError(f"--sampling-steps must be at least 2 (got {self.steps}): the adapter trains on the "
                              "last step of a few-step schedule (4 in the paper).")
        if self.frames < 1:
            raise EngineError(f"--frames must be at least 1 (got {self.frames}).")
        amp.check_choice(self.precision)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 64 or value % 8:
                raise EngineError(f"--{name} must be a multiple of 8 and at least 64 (got {value}).")

    def to_json(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class AdapterHistory:
    loss: list = field(default_factory=list)          # identity + regulariser per iteration (NaN: skipped)
    similarity: list = field(default_factory=list)    # face similarity of the trained frame (NaN: no face)
    skipped: int = 0
    last_latent: torch.Tensor | None = None
    precision: str = "fp32"


def reg_term(params, initial) -> torch.Tensor:
    """The weight-space regulariser ||theta - theta_0||^2."""
    return sum(((p - p0) ** 2).sum() for p, p0 in zip(params, initial))
