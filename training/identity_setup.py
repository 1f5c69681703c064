"""Setting up the two stages of one identity, the same way for both front ends.

The Train node (:mod:`.identity_training`, ComfyUI's models) and the engine
(:mod:`..engine.train`, diffusers' models) run the stages with their own models,
but take everything else from here, so that the same photos, settings and seed
give them the same draws, the same starting point and the same adapter metadata:

- the checks of the class word, and the record of what an identity is trained from
  (:mod:`.identity_record`: photo hashes, every setting that changes the result, the
  base model's fingerprint), which decides a reuse in both;
- the reference faces' embeddings, with colour-jittered copies seeded from the run's
  ``reference-augmentation`` stream;
- the token stage's random streams (``token-draws``: photos, flips and prompt template;
  ``token-noise``: timesteps and noise);
- the adapter's starting weights (down random from the ``adapter-init`` stream, in the
  UNet's own layer order; up zero: a no-op);
- stage 2's streams: prompts (``prompts``), the trained frame (``frames``) and one noise
  generator per iteration (``noise``), as :mod:`.sia_trainer` draws them;
- the ``training`` metadata of the adapter file: settings, record, loss and similarity
  histories, final similarity, and the independent score of the last training sample.

Free of ComfyUI; the face stack is imported where it is used.
"""
from __future__ import annotations

import logging
import math
import random

import torch

from . import identity_record
from .errors import TrainingError
from .random_streams import SEED_BITS, stream, stream_seed

log = logging.getLogger("PersonalVideo")
METHOD = "PersonalVideo"
REFERENCE_AUGMENT_COPIES = 2   # colour-jittered copies of each reference face (paper: augmentation of references)


def check_class_word(class_word, input_name: str = "class_word") -> str:
    """The class word, stripped; TrainingError naming ``input_name`` unless it is a plain word or two."""
    word = class_word.strip() if isinstance(class_word, str) else ""
    if not word or "\n" in word or "{" in word:
        raise TrainingError(f"{input_name} must be a plain word or two such as man, woman or person.")
    return word


def trigger_of(name: str, class_word: str) -> str:
    """What a prompt writes to call the identity."""
    return f"embedding:{name} {class_word}"


def record_of(reference_images, class_word: str, templates: list, ti, sia, rank: int, negative_prompt: str,
              base_model: dict, image_model: str = "none", extra: dict | None = None) -> dict:
    """The record an identity is trained from (:mod:`.identity_record`): what decides a reuse. ``extra``: more
    settings of one model family (Wan: the distillation LoRA of the training samples)."""
    settings = {"class_word": class_word, "prompts": identity_record.text_hash("\n".join(templates)),
                "ti_steps": ti.steps, "ti_learning_rate": ti.lr, "ti_batch_size": ti.batch_size,
                "sia_iterations": sia.iterations, "sia_learning_rate": sia.lr, "sia_rank": int(rank),
                "reg_lambda": sia.reg_lambda, "frames": sia.frames, "width": sia.width, "height": sia.height,
                "sampling_steps": sia.steps, "seed": int(sia.seed), "precision": sia.precision,
                "training_cfg": sia.cfg, "negative_prompt": identity_record.text_hash(negative_prompt),
                "image_model": image_model}
    if getattr(sia, "early_stop", False):   # only when on: records of runs without it stay as they were
        settings["early_stop"] = True
    settings.update(extra or {})
    return identity_record.make_record(identity_record.photo_hashes(reference_images), settings, base_model)


def reference_embeddings(detector, encoder, images, seed: int):
    """The reference faces' embeddings and their augmented copies (:func:`.face.references.embed_references`)."""
    from .face.references import embed_references

    return embed_references(detector, encoder, images, augment_copies=REFERENCE_AUGMENT_COPIES,
                            seed=stream_seed(seed, "reference-augmentation"))


def token_streams(seed: int) -> tuple:
    """(random.Random, torch.Generator) of the token stage: which photos, flips and templates; which
    timesteps and noise (:func:`.textual_inversion.draw_batch` draws one batch from them)."""
    return stream(seed, "token-draws"), torch.Generator().manual_seed(stream_seed(seed, "token-noise"))


def initial_adapter(targets, rank: int, seed: int, info):
    """The adapter stage 2 starts from, for ``targets`` (objects with ``path``, ``in_features``,
    ``out_features``): the same values for a seed whichever front end found the layers. SD1.5 targets are put
    in the UNet's layer order; Wan's (``info.base`` ``wan``) come in block order from their discovery."""
    from ..sia import SIAAdapter, families, naming

    ordered = list(targets) if info.base == families.WAN else sorted(targets, key=lambda t: naming.unet_order(t.path))
    return SIAAdapter.initialise(ordered, rank=rank, seed=stream_seed(seed, "adapter-init"), info=info)


def frame_stream(seed: int) -> random.Random:
    """Stage 2's stream of trained-frame indices (one draw per iteration)."""
    return stream(seed, "frames")


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """Stage 2's generator of iteration ``iteration``: its starting noise [frames, 4, h, w] first, then the
    noise of each step of the few-step schedule, in that shape."""
    return torch.Generator().manual_seed((stream_seed(seed, "noise") + iteration) % (2 ** SEED_BITS))


def training_info(class_word: str, rank: int, references: int, ti, sia, templates: list, record: dict,
                  **extra) -> dict:
    """The adapter's ``training`` metadata as the run starts (:func:`add_results` completes it)."""
    return {"method": METHOD, "class_word": class_word, "rank": int(rank), "references": int(references),
            "textual_inversion": ti.to_json(), "sia": sia.to_json(), "prompts": len(templates),
            identity_record.RECORD_KEY: record, **extra}


def last_finite(values):
    """The last finite value (None if there is none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return finite[-1] if finite else None


def _finite_or_none(values):
    return [round(float(v), 6) if v is not None and math.isfinite(v) else None for v in values]


def add_results(training: dict, token_losses, history, score: dict):
    """Complete ``training`` with what the run gave: frames skipped, precision, the histories (None where an
    iteration had no face), the final similarity and the independent ``score``; returns the final similarity."""
    final = last_finite(history.similarity)
    training.update(skipped_frames=history.skipped, precision=history.precision, final_similarity=final,
                    history={"token_loss": _finite_or_none(token_losses),
                             "adapter_loss": _finite_or_none(history.loss),
                             "similarity": _finite_or_none(history.similarity)},
                    identity_score=score)
    if history.early_stop is not None:
        training["early_stop"] = history.early_stop
    return final


def score_sample(sample_scorer, frames, reference_images) -> dict:
    """The independent score of the last training sample (``frames`` IMAGE, or None when it could not be
    decoded); never raises."""
    if sample_scorer is None:
        return {"identity_match": None, "face_similarity": None, "skipped": "no independent recogniser was given"}
    if frames is None:
        return {"identity_match": None, "face_similarity": None, "skipped": "the last training sample could not be decoded"}
    try:
        return dict(sample_scorer(frames, reference_images))
    except Exception as exc:   # a score is a report, never a reason to lose a trained identity
        log.warning("[PersonalVideo] the independent score of the last training sample failed: %s", exc)
        return {"identity_match": None, "face_similarity": None, "skipped": f"{type(exc).__name__}: {exc}"}
