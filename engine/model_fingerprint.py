"""The engine's base model fingerprint, in the Train node's form (:mod:`..training.base_model`).

The image UNet's weights, the motion model's weights and SD1.5's noise schedule, digested
as the node digests ComfyUI's MODEL (:mod:`..training.weights_digest`: without names, so
the same checkpoint gives the same ``weights`` in both; the motion model without its
computed positional tables, so the same motion-model file gives the same ``motion``).
The engine stacks no LoRAs (``patches``: none) and samples its training videos with
SD1.5's own schedule (``sampling``; a node MODEL with AnimateDiff-Evolved's beta schedule
differs there, as its training samples do).
"""
from __future__ import annotations

from ..training.weights_digest import NONE, fingerprint as weights_fingerprint, motion_digest, schedule_digest
from .noise_table import NoiseTable

MODEL_CLASS = "SD15"


def fingerprint(models, motion_adapter=None) -> dict:
    """The fingerprint of ``models`` (their image UNet) trained with ``motion_adapter`` (a MotionAdapter or None)."""
    import torch

    weights = [t for name, t in models.unet.state_dict().items() if "motion_modules" not in name]
    motion = NONE if motion_adapter is None else motion_digest([(motion_adapter.state_dict(), NONE)])
    table = NoiseTable(models.scheduler_config)
    with torch.no_grad():
        return weights_fingerprint(MODEL_CLASS, weights, motion=motion,
                                   sampling=schedule_digest(table.prediction, table.sigmas))
