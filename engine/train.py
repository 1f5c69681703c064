"""Training one identity in the engine: photos -> token (stage 1) -> adapter (stage 2) -> the two files.

The same order, checks, defaults and metadata as the Train node: every check before
any work; reference faces found and embedded by the shared face stack (two
colour-jittered copies each); face-centred crops for the token; the adapter starts as
a no-op (up zero) at rank 4, alpha = rank; the files are the nodes' files.
"""
from __future__ import annotations

import math
import os

import torch

from ..sia.adapter import AdapterInfo
from ..training import prompts as prompt_data
from ..training.identity_files import sanitise_name
from ..training.textual_inversion import TISettings
from . import identity_store, models as engine_models, sia_peft
from ..training.sia_settings import NEGATIVE_PROMPT, TRAINING_CFG, SIATrainSettings
from .errors import EngineError
from .identity_token import TokenPrompts

REFERENCE_AUGMENT_COPIES = 2
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def photo_paths(items) -> list:
    """Photo files from paths and folders (a folder: its image files, sorted)."""
    out = []
    for item in items:
        if os.path.isdir(item):
            out += sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(PHOTO_SUFFIXES))
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise EngineError(f"photo {item!r} not found; give image files or a folder of them.")
    if not out:
        raise EngineError(f"no photos found in {', '.join(map(str, items))} (.jpg, .png, .webp).")
    return out


def read_photo(path: str) -> torch.Tensor:
    """An image file as [H, W, 3] float 0..1."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as exc:
        raise EngineError(f"photo {path} is not a readable image ({exc}).") from None
    return torch.from_numpy(rgb.copy())


def _last_finite(values):
    finite = [v for v in values if math.isfinite(v)]
    return finite[-1] if finite else None


def train_identity(models, photos, name: str, class_word: str, face_stack, models_dir: str,
                   motion_adapter=None, ti_settings: TISettings | None = None,
                   sia_settings: SIATrainSettings | None = None, rank: int = 4, prompts: str | None = None,
                   overwrite: bool = False, progress=None, negative: str = NEGATIVE_PROMPT) -> dict:
    """Train and save one identity; ``photos`` image tensors [H, W, 3] or files/folders; ``face_stack`` a
    (FaceStack, encoder) pair (:func:`.faces.load_face_stack`); ``progress(stage, i, total, loss, similarity)``."""
    from ..training.face.identity_loss import IdentityLoss
    from ..training.face.references import embed_references, training_crops

    # --- every check before any work ---
    name = sanitise_name(name)
    class_word = (class_word or "").strip()
    if not class_word or "\n" in class_word or "{" in class_word:
        raise EngineError("--class-word must be a plain word or two such as man, woman or person.")
    templates = prompt_data.parse_prompts(prompts) if prompts else prompt_data.default_prompts()
    identity_store.check_free(models_dir, name, overwrite)
    ti_settings = ti_settings or TISettings()
    sia_settings = sia_settings or SIATrainSettings(cfg=TRAINING_CFG)
    ti_settings.check()
    sia_settings.check()
    if rank < 1:
        raise EngineError(f"--rank must be at least 1 (got {rank}).")
    if models.has_motion:
        raise EngineError("internal: give the image models and the motion adapter apart (stage 1 runs without "
                          "motion modules)")
    images = [p if torch.is_tensor(p) else read_photo(p) for p in
              (photos if all(torch.is_tensor(p) for p in photos) else photo_paths(photos))]
    stack, encoder = face_stack
    device = next(models.unet.parameters()).device

    refs = embed_references(stack.detector, encoder, images, augment_copies=REFERENCE_AUGMENT_COPIES,
                            seed=sia_settings.seed)
    crops = training_crops(images, refs.faces, sia_settings.width, sia_settings.height)
    token_prompts = TokenPrompts(models.text_encoder, models.tokenizer, class_word, name)
    scheduler_table = _abar(models.scheduler_config).to(device)

    # --- stage 1: the token, on single images (the image UNet) ---
    from .train_token import train_token

    vector, token_losses = train_token(
        models.unet, models.vae, token_prompts, crops.images,
        scheduler_table, ti_settings, _stage_progress(progress, "token", ti_settings.steps))

    # --- stage 2: the adapter, through the motion modules ---
    from .train_adapter import train_adapter

    if motion_adapter is not None:
        engine_models.add_motion(models, motion_adapter)
    with torch.random.fork_rng():
        torch.manual_seed(sia_settings.seed)
        sia_peft.attach(models.unet, rank, float(rank), models.res_blocks)
    trigger = f"embedding:{name} {class_word}"
    info = AdapterInfo(name=name, trigger=trigger,
                       num_res_blocks=models.res_blocks,
                       training={"method": "PersonalVideo", "class_word": class_word, "rank": int(rank),
                                 "references": len(refs.faces.labels), "textual_inversion": ti_settings.to_json(),
                                 "sia": sia_settings.to_json(), "prompts": len(templates),
                                 "engine": "diffusers+peft", "motion_modules": bool(models.has_motion)})
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings.to(device))
    history = train_adapter(models, token_prompts, vector, loss_fn,
                            prompt_data.PromptSampler(templates, sia_settings.seed), sia_settings,
                            _stage_progress(progress, "adapter", sia_settings.iterations), negative=negative)
    trained = sia_peft.extract(models.unet, float(rank), info, models.res_blocks, embedding=vector)
    trained.info.training.update(skipped_frames=history.skipped, precision=history.precision,
                                 final_similarity=_last_finite(history.similarity))
    paths = identity_store.write_identity(models_dir, name, trained, vector, overwrite=overwrite)
    trained.source = paths["sia"]
    return {"name": name, "paths": paths, "adapter": trained, "vector": vector, "token_losses": token_losses,
            "history": history, "trigger": trigger, "final_similarity": trained.info.training["final_similarity"]}


def _stage_progress(progress, stage: str, total: int):
    def report(i, loss, similarity=None):
        if progress is not None:
            progress(stage, i, total, loss, similarity)
    return report


def _abar(config: dict) -> torch.Tensor:
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(config).alphas_cumprod.float()

