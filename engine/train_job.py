"""One training job of the command line: its settings, models, face stack and progress bars, then the training.

What `personalvideo train` runs, and what each `train-many` task runs in its worker
(:mod:`.train_many`), from the parsed command line (``args``) and, for a manifest
row, that row's overrides.  Also where the identity files go (:func:`models_dir_of`),
which `generate` and `train-many` use too.  Nothing here parses arguments or prints.
"""
from __future__ import annotations

import os
import sys

DEFAULT_MODELS_DIR = "personalvideo_models"
SETTING_NAMES = ("ti_steps", "ti_lr", "ti_batch_size", "sia_iterations", "sia_lr", "rank", "reg_lambda", "frames",
                 "width", "height", "sampling_steps", "seed", "precision", "training_cfg",
                 "gradient_checkpointing")


def models_dir_of(args) -> str:
    """Where identities live: ``--models-dir``, else ``<ComfyUI>/models``, else ./personalvideo_models."""
    if args.models_dir:
        return os.path.abspath(args.models_dir)
    if args.comfyui_root:
        return os.path.join(os.path.abspath(args.comfyui_root), "models")
    return os.path.abspath(DEFAULT_MODELS_DIR)


def resolve_device(choice: str):
    import torch

    from .errors import EngineError

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"--device {choice}: this machine has no CUDA device; use --device cpu.")
    return device


def load_engine_models(args, motion: bool):
    """(EngineModels, MotionAdapter or None) of ``--checkpoint`` and, with ``motion``, ``--motion-model``."""
    from . import models

    engine = models.load_models(args.checkpoint, args.tokenizer, args.comfyui_root)
    adapter = None
    if motion and args.motion_model:
        path = models.resolve_model_path(args.motion_model, "motion", args.comfyui_root, "motion model")
        adapter = models.motion_adapter_from_file(path)
    return engine, adapter


def train_settings(args, overrides: dict | None = None):
    """(TISettings, SIATrainSettings, rank) from the command line, with a manifest row's overrides."""
    from ..training.sia_settings import SIATrainSettings
    from ..training.textual_inversion import TISettings

    values = {k: getattr(args, k) for k in SETTING_NAMES}
    values.update(overrides or {})
    ti = TISettings(steps=int(values["ti_steps"]), lr=float(values["ti_lr"]), batch_size=int(values["ti_batch_size"]),
                    seed=int(values["seed"]), precision=str(values["precision"]),
                    gradient_checkpointing=str(values["gradient_checkpointing"]))
    sia = SIATrainSettings(iterations=int(values["sia_iterations"]), lr=float(values["sia_lr"]),
                          reg_lambda=float(values["reg_lambda"]), steps=int(values["sampling_steps"]),
                          frames=int(values["frames"]), width=int(values["width"]), height=int(values["height"]),
                          seed=int(values["seed"]), precision=str(values["precision"]),
                          cfg=float(values["training_cfg"]),
                          gradient_checkpointing=str(values["gradient_checkpointing"]))
    return ti, sia, int(values["rank"])


def read_prompts(args) -> str | None:
    """The text of ``--prompts`` (None: the pack's own prompts)."""
    if not args.prompts:
        return None
    with open(args.prompts, encoding="utf-8") as f:
        return f.read()


def faces_folder(args) -> str:
    from .errors import EngineError

    if args.faces:
        return args.faces
    if args.comfyui_root:
        return os.path.join(args.comfyui_root, "models", "insightface")
    raise EngineError("no face models: give --faces (the insightface folder holding models/antelopev2) or "
                      "--comfyui-root.")


class _Bars:
    """tqdm progress bars, one per training stage."""

    def __init__(self, label: str = ""):
        self.bars, self.label = {}, label

    def __call__(self, stage, i, total, loss, similarity):
        from tqdm import tqdm

        if stage not in self.bars:
            self.bars[stage] = tqdm(total=total, desc=f"{self.label}{stage}", unit="it", file=sys.stderr)
        bar = self.bars[stage]
        bar.set_postfix(loss=f"{loss:.4f}", **({} if similarity is None else {"face_sim": f"{similarity:.3f}"}))
        bar.update(1)

    def close(self):
        for bar in self.bars.values():
            bar.close()


def train_one(args, photos, name, class_word, overrides=None, label="") -> dict:
    """Load the models and train one identity (the work of `train` and of each train-many task)."""
    from ..evaluation.training_sample import score_training_sample
    from . import training_dtypes
    from .faces import load_face_stack
    from .model_fingerprint import fingerprint
    from .train import train_identity

    ti, sia, rank = train_settings(args, overrides)
    device = resolve_device(args.device)
    engine, motion = load_engine_models(args, motion=True)
    loaded = fingerprint(engine, motion)   # what train-many compares: the weights as read, before any cast
    training_dtypes.place(engine, motion, device, sia.precision)
    stack = load_face_stack(faces_folder(args), args.face_pack, "CUDA" if device.type == "cuda" else "CPU")
    bars = _Bars(label)
    try:
        return train_identity(engine, photos, name, class_word, stack, models_dir_of(args), motion_adapter=motion,
                              ti_settings=ti, sia_settings=sia, rank=rank, prompts=read_prompts(args),
                              overwrite=args.overwrite, progress=bars, negative=args.training_negative,
                              sample_scorer=score_training_sample, base_model=loaded)
    finally:
        bars.close()
