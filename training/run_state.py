"""Checkpoints of a training run, to resume an interrupted or failed one.

Every ``checkpoint_every`` iterations (and when stage 1 ends, and before a
no-face stop) the state of the run is written to a hidden working folder,
``models/sia/.pv-training/<name>/state.pvstate`` (safetensors format under
another extension, so no adapter list ever shows it; written atomically, one
file per identity): the trainable tensors (token vector, adapter weights), the
AdamW state of each, the step or iteration reached, the losses so far, and the
run's record (:mod:`.identity_record`). Nothing random is stored: every draw
comes from a seeded stream (:mod:`.random_streams`), so resuming replays the
draws already made and continues exactly where the run stopped (on CPU the
result is the same to the bit; on CUDA fp16 the gradient scaler starts afresh).

A state is resumed only when its record equals the new run's (same photos,
settings and MODEL); any other state of that name is replaced. The folder is
removed when the identity is saved. Nothing is unpickled.
"""
from __future__ import annotations

import json
import os
import shutil

import torch

from .errors import TrainingError
from .inference_tensors import normal_tensors

FOLDER = ".pv-training"
FILE = "state.pvstate"
DEFAULT_EVERY = 50


def state_folder(name: str) -> str:
    import folder_paths

    return os.path.join(folder_paths.get_folder_paths("sia")[0], FOLDER, name)


def optimizer_tensors(optimizer, params, prefix: str) -> dict:
    """AdamW state of ``params`` as flat tensors ``<prefix>.<i>.<key>``."""
    out = {}
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            out[f"{prefix}.{i}.{key}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    return out


def restore_optimizer(optimizer, params, tensors: dict, prefix: str) -> None:
    """Put the AdamW state :func:`optimizer_tensors` wrote back (as normal tensors: the step updates them)."""
    with normal_tensors():
        _restore_optimizer(optimizer, params, tensors, prefix)


def _restore_optimizer(optimizer, params, tensors: dict, prefix: str) -> None:
    # the fused update reads its step count on the weights' device, the others on the CPU
    step_on_device = bool(optimizer.defaults.get("fused") or optimizer.defaults.get("capturable"))
    for i, p in enumerate(params):
        state = {}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            name = f"{prefix}.{i}.{key}"
            if name in tensors:
                value = tensors[name]
                if key == "step":
                    state[key] = value.to(p.device).clone() if step_on_device else value.clone()
                else:
                    state[key] = value.to(p.device, p.dtype).clone()
        if state:
            optimizer.state[p] = state


class RunState:
    """Reads, writes and clears the checkpoint of one identity's run."""

    def __init__(self, name: str, record: dict, every: int = DEFAULT_EVERY):
        if every < 0:
            raise TrainingError(f"checkpoint_every must be 0 (off) or more (got {every}).")
        self.name, self.record, self.every = name, record, int(every)
        self.folder = state_folder(name)
        self.path = os.path.join(self.folder, FILE)
        self.saved = 0

    def due(self, done: int, total: int) -> bool:
        """Whether a checkpoint is written after ``done`` of ``total`` (not after the last: the result follows)."""
        return self.every > 0 and done % self.every == 0 and done < total

    def save(self, stage: str, done: int, tensors: dict, extra: dict) -> str:
        from safetensors.torch import save_file

        from ..sia.atomic_file import atomic_write

        meta = {"stage": stage, "done": str(int(done)), "record": json.dumps(self.record, sort_keys=True),
                "extra": json.dumps(extra)}
        flat = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
                for k, v in tensors.items()}
        os.makedirs(self.folder, exist_ok=True)
        atomic_write(self.path, lambda tmp: save_file(flat, tmp, metadata=meta))
        self.saved += 1
        return self.path

    def load(self):
        """``(stage, done, tensors, extra)`` of a resumable state of this very run, else None."""
        from safetensors import safe_open

        if not os.path.isfile(self.path):
            return None
        try:
            with safe_open(self.path, framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            if json.loads(meta.get("record", "null")) != json.loads(json.dumps(self.record, sort_keys=True)):
                return None
            return meta["stage"], int(meta["done"]), tensors, json.loads(meta.get("extra", "{}"))
        except Exception:   # damaged or from another version: start afresh (it is replaced by the next save)
            return None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        parent = os.path.dirname(self.folder)
        try:
            os.rmdir(parent)   # only when no other identity's run is kept there
        except OSError:
            pass


class StageCheckpoints:
    """The checkpoints of one stage: what the stage's loop writes (its own tensors and values) plus what the run
    carries from earlier stages (``carry_tensors``, ``carry_extra``)."""

    def __init__(self, run: RunState | None, stage: str, carry_tensors=None, carry_extra=None):
        self.run, self.stage = run, stage
        self.carry_tensors, self.carry_extra = dict(carry_tensors or {}), dict(carry_extra or {})

    @property
    def enabled(self) -> bool:
        return self.run is not None and self.run.every > 0

    def due(self, done: int, total: int) -> bool:
        return self.run is not None and self.run.due(done, total)

    def save(self, done: int, tensors: dict, extra: dict):
        if self.run is None:
            return None
        return self.run.save(self.stage, done, {**self.carry_tensors, **tensors}, {**self.carry_extra, **extra})
