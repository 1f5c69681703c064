"""Training one identity in the engine: photos -> token (stage 1) -> adapter (stage 2) -> the two files.

The same order, checks, defaults, draws and metadata as the Train node, from the setup
both share (:mod:`..training.identity_setup`): every check before any work; reference
faces found and embedded by the shared face stack (two colour-jittered copies each, from
the seed's stream); face-centred crops for the token; the adapter starts from the same
weights (a no-op: up zero) at rank 4, alpha = rank; the adapter file holds the same
``training`` metadata (the record of what it was trained from, the histories, the final
similarity, the independent score of the last training sample), so a node can reuse an
identity the engine trained on the same inputs and the other way round; the files are
the nodes' files.
"""
from __future__ import annotations

import os

import torch

from ..sia.adapter import AdapterInfo
from ..training import identity_setup as setup, prompts as prompt_data
from ..training.identity_files import sanitise_name
from ..training.textual_inversion import TISettings
from . import identity_store, models as engine_models, sia_peft
from ..training.sia_settings import NEGATIVE_PROMPT, TRAINING_CFG, SIATrainSettings
from .errors import EngineError
from .identity_token import TokenPrompts
from .noise_table import NoiseTable

ENGINE = "diffusers+peft"
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
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            upright = ImageOps.exif_transpose(im)     # as ComfyUI's Load Image: a phone photo the right way up
            rgb = np.asarray(upright.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as exc:
        raise EngineError(f"photo {path} is not a readable image ({exc}).") from None
    return torch.from_numpy(rgb.copy())


def train_identity(models, photos, name: str, class_word: str, face_stack, models_dir: str,
                   motion_adapter=None, ti_settings: TISettings | None = None,
                   sia_settings: SIATrainSettings | None = None, rank: int = 4, prompts: str | None = None,
                   overwrite: bool = False, progress=None, negative: str = NEGATIVE_PROMPT,
                   sample_scorer=None, base_model: dict | None = None) -> dict:
    """Train and save one identity; ``photos`` image tensors [H, W, 3] or files/folders; ``face_stack`` a
    (FaceStack, encoder) pair (:func:`.faces.load_face_stack`); ``progress(stage, i, total, loss, similarity)``;
    ``sample_scorer(frames IMAGE, photos) -> dict`` the independent score of the last training sample
    (``evaluation.training_sample.score_training_sample``; None: not scored), as the node's; ``base_model`` the
    fingerprint of the models as loaded (:func:`.model_fingerprint.fingerprint`) where they were then cast to
    their training dtypes (None: taken from ``models``)."""
    from ..training.face.identity_loss import IdentityLoss
    from ..training.face.references import training_crops
    from .model_fingerprint import fingerprint

    # --- every check before any work ---
    name = sanitise_name(name)
    class_word = setup.check_class_word(class_word, "--class-word")
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
    record = setup.record_of(images, class_word, templates, ti_settings, sia_settings, rank, negative,
                             base_model or fingerprint(models, motion_adapter))
    stack, encoder = face_stack
    device = next(models.unet.parameters()).device

    refs = setup.reference_embeddings(stack.detector, encoder, images, sia_settings.seed)
    crops = training_crops(images, refs.faces, sia_settings.width, sia_settings.height)
    token_prompts = TokenPrompts(models.text_encoder, models.tokenizer, class_word, name)

    # --- stage 1: the token, on single images (the image UNet) ---
    from .train_token import train_token

    vector, token_losses = train_token(
        models.unet, models.vae, token_prompts, crops.images,
        NoiseTable(models.scheduler_config), ti_settings, _stage_progress(progress, "token", ti_settings.steps))

    # --- stage 2: the adapter, through the motion modules ---
    from .train_adapter import train_adapter

    if motion_adapter is not None:
        engine_models.add_motion(models, motion_adapter)
    trigger = setup.trigger_of(name, class_word)
    info = AdapterInfo(name=name, trigger=trigger, num_res_blocks=models.res_blocks,
                       training=setup.training_info(class_word, rank, len(refs.faces.labels), ti_settings,
                                                    sia_settings, templates, record, engine=ENGINE,
                                                    motion_modules=bool(models.has_motion)))
    start = setup.initial_adapter(sia_peft.targets(models.unet, models.res_blocks), rank, sia_settings.seed, info)
    with torch.random.fork_rng():     # peft's own initialisation draws from the global generator; ours replaces it
        sia_peft.attach(models.unet, rank, float(rank), models.res_blocks, adapter=start)
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings.to(device))
    history = train_adapter(models, token_prompts, vector, loss_fn,
                            prompt_data.PromptSampler(templates, sia_settings.seed), sia_settings,
                            _stage_progress(progress, "adapter", sia_settings.iterations), negative=negative)
    trained = sia_peft.extract(models.unet, float(rank), info, models.res_blocks, embedding=vector)
    score = setup.score_sample(sample_scorer, _last_sample(models, history) if sample_scorer else None, images)
    setup.add_results(trained.info.training, token_losses, history, score)
    paths = identity_store.write_identity(models_dir, name, trained, vector, overwrite=overwrite)
    trained.source = paths["sia"]
    return {"name": name, "paths": paths, "adapter": trained, "vector": vector, "token_losses": token_losses,
            "history": history, "trigger": trigger, "final_similarity": trained.info.training["final_similarity"],
            "identity_score": score}


def _last_sample(models, history):
    """The last training sample's frames as an IMAGE [F, H, W, 3] (None if they cannot be decoded)."""
    from .generate import decode

    try:
        return decode(models.vae, history.last_latent.to(next(models.vae.parameters()).device), False).movedim(1, -1)
    except Exception:   # noqa: BLE001  (the score then says the sample could not be decoded)
        return None


def _stage_progress(progress, stage: str, total: int):
    def report(i, loss, similarity=None):
        if progress is not None:
            progress(stage, i, total, loss, similarity)
    return report

