"""Training one identity on core Wan from start to end: what the Wan Train node calls.

The same run as :func:`.identity_training.train_identity` (reuse by record, checkpoints and resume, the face
stack, the files written before anything else can fail, the chart and the preview), sharing its code; what
differs on Wan:

- the MODEL is a core Wan model (Wan 2.1 / 2.2; for Wan 2.2 A14B the low-noise expert, the one the adapter is
  applied to: docs/wan.md), the CLIP its umT5, the VAE the Wan VAE;
- stage 2 is :func:`.wan_trainer.train_wan_sia` (Euler steps at the MODEL's shift, the first latent frame
  decoded); its samples can be made with a distillation LoRA on a clone of the MODEL
  (:mod:`.sampling_lora`), which changes the training videos and nothing that is saved;
- the sampling steps and cfg default (``AUTO``) to what the samples are made with: 4 steps at cfg 1 with a
  distillation LoRA (as those LoRAs are used), 8 steps at cfg 5 without one (Wan's own cfg; fewer steps than
  a normal run, so the video is unfinished, but its last step is where the adapter trains);
- stage 1, the token in umT5's input, is :func:`.wan_token.train_wan_token` (on the reference crops, each a
  single-frame video), run by the same :func:`.identity_training.token_stage` as on SD1.5 (its checkpoints and
  resume); stage 2 then trains on prompts with the learned token in them (:class:`.wan_token.WanTokenPrompts`),
  and the token file (``models/embeddings/<name>.safetensors``, core's umT5 key ``umt5xxl``) is written with the
  adapter, both or neither. ``ti_steps`` 0 trains no token: the prompts name the class word alone, the trigger
  phrase is the class word, only the adapter file is written, and the result's ``note`` (shown on the node)
  says so.
"""
from __future__ import annotations

import logging

from . import identity_files, identity_setup as setup
from . import prompts as prompt_data
from .errors import TrainingError
from .identity_training import (IF_EXISTS, Plan, finish, progress_callbacks, references, resume_point,
                                run_or_reuse, token_stage)
from .inference_tensors import normal_tensors
from .run_state import DEFAULT_EVERY, StageCheckpoints
from .sia_settings import NEGATIVE_PROMPT
from .sia_settings import WanSIATrainSettings

log = logging.getLogger("PersonalVideo")
AUTO = 0                        # sampling_steps / training_cfg: chosen by whether a distillation LoRA is used
WITH_LORA = (4, 1.0)            # (steps, cfg) with a distillation LoRA, as they are used
WITHOUT_LORA = (8, 5.0)         # without one: Wan's own cfg, a few more steps
NO_TOKEN = "adapter only, no token: ti_steps 0"   # the note a run without a token stage shows on the node


def sampling_choice(sampling_steps, training_cfg, has_lora: bool) -> tuple:
    """(steps, cfg) of the training samples: each given value, or its ``AUTO`` default."""
    steps, cfg = WITH_LORA if has_lora else WITHOUT_LORA
    return (steps if int(sampling_steps) == AUTO else int(sampling_steps),
            cfg if float(training_cfg) == AUTO else float(training_cfg))


def check_wan(model, what: str = "model"):
    """The Wan adapter targets of a core Wan MODEL, or a TrainingError naming the input."""
    from ..sia import families

    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if diffusion_model is None:
        raise TrainingError(f"the {what} input is not a diffusion MODEL: connect a Wan model (Load Diffusion Model).")
    if families.family_of(diffusion_model) != families.WAN:
        raise TrainingError(f"the {what} input is not a Wan model (it is {families.describe(diffusion_model)}): "
                            "train SD1.5 / AnimateDiff models with 'Train PersonalVideo Identity'.")
    return families.discover(diffusion_model)


def check_text_encoder(model, clip, class_word: str):
    """TrainingError unless ``clip``'s text features are as wide as the Wan MODEL takes (umT5-XXL: 4096)."""
    import torch

    if clip is None or not hasattr(clip, "tokenize"):
        raise TrainingError("the clip input is not a CLIP: connect Load CLIP (type wan) with umT5-XXL.")
    want = int(model.model.diffusion_model.text_embedding[0].in_features)
    with normal_tensors(), torch.no_grad():
        cond = clip.encode_from_tokens(clip.tokenize(class_word))
    if int(cond.shape[-1]) != want:
        raise TrainingError(f"the CLIP gives {int(cond.shape[-1])}-wide text features but this Wan MODEL expects "
                            f"{want} (umT5-XXL): connect Load CLIP with type wan and the umT5 file the model was "
                            "made with, not an SD1.5 CLIP.")


def _plan(model, sample_model, lora_name, clip, reference_images, identity_name, class_word, prompts, ti_steps,
          ti_learning_rate, ti_batch_size, sia_iterations, sia_learning_rate, sia_rank, reg_lambda, frames, width,
          height, sampling_steps, training_cfg, seed, if_exists, negative_prompt, gradient_checkpointing, precision,
          early_stop) -> Plan:
    from . import textual_inversion as ti
    from .base_model import fingerprint, patches_digest
    from .checkpoint_choice import normalise

    name = identity_files.sanitise_name(identity_name)
    class_word = setup.check_class_word(class_word)
    if if_exists not in IF_EXISTS:
        raise TrainingError(f"if_exists must be one of {', '.join(IF_EXISTS)} (got {if_exists!r}).")
    templates = prompt_data.parse_prompts(prompts)
    found = check_wan(model)
    if not isinstance(negative_prompt, str):
        raise TrainingError(f"negative_prompt must be text (got {type(negative_prompt).__name__}).")
    steps, cfg = sampling_choice(sampling_steps, training_cfg, lora_name is not None)
    sia_settings = WanSIATrainSettings(iterations=int(sia_iterations), lr=float(sia_learning_rate),
                                       reg_lambda=float(reg_lambda), steps=steps, frames=int(frames),
                                       width=int(width), height=int(height), seed=int(seed), cfg=cfg,
                                       gradient_checkpointing=normalise(gradient_checkpointing),
                                       precision=precision, early_stop=bool(early_stop))
    sia_settings.check()
    ti_settings = ti.TISettings(steps=int(ti_steps), lr=float(ti_learning_rate), batch_size=int(ti_batch_size),
                                seed=int(seed), gradient_checkpointing=normalise(gradient_checkpointing),
                                precision=precision)
    ti_settings.check()
    check_text_encoder(model, clip, class_word)
    if ti_settings.steps > 0:
        from .wan_token import WanTokenPrompts

        token_prompts = WanTokenPrompts(clip, class_word)   # the umT5 tokenizer, and {token} in every prompt
        for template in templates:
            token_prompts.tokens(template)
    lora = {"sampling_lora": "none" if lora_name is None else f"{lora_name} ({patches_digest(sample_model)})"}
    record = setup.record_of(reference_images, class_word, templates, ti_settings, sia_settings, int(sia_rank),
                             negative_prompt, fingerprint(model), extra=lora)
    return Plan(name=name, class_word=class_word, templates=templates, found=found, sia=sia_settings,
                 ti=ti_settings, rank=int(sia_rank), record=record, if_exists=if_exists, negative=negative_prompt,
                 token=ti_settings.steps > 0, lora=lora_name)


def train_wan_identity(model, clip, vae, reference_images, face_analysis, identity_name, class_word, prompts,
                       ti_steps=0, ti_learning_rate=1e-3, ti_batch_size=4, sia_iterations=400,
                       sia_learning_rate=1e-4, sia_rank=4, reg_lambda=1e-2, frames=WanSIATrainSettings.frames,
                       width=WanSIATrainSettings.width, height=WanSIATrainSettings.height, sampling_steps=AUTO,
                       training_cfg=AUTO, seed=0, if_exists="reuse", checkpoint_every=DEFAULT_EVERY, resume=True,
                       negative_prompt=NEGATIVE_PROMPT, sampling_lora=None, sampling_lora_strength=1.0,
                       sample_scorer=None, progress_hook=None, gradient_checkpointing="auto", precision="auto",
                       early_stop=False) -> dict:
    """Train (or reuse) identity ``identity_name`` on the Wan ``model``; the result and the arguments are
    :func:`.identity_training.train_identity`'s, with Wan's defaults, and:

    ``sampling_lora``: the path of a distillation LoRA (safetensors) put on a clone of ``model`` at
    ``sampling_lora_strength`` for stage 2's samples only; ``sampling_steps`` / ``training_cfg`` ``AUTO`` (0):
    4 steps at cfg 1 with it, 8 at cfg 5 without. ``ti_steps`` above 0: the token stage first (its file written
    with the adapter); 0: the adapter alone, and the result's ``note`` says so. The user's MODEL, CLIP and VAE
    are not changed."""
    import os

    from .sampling_lora import with_sampling_lora

    check_wan(model)
    sample_model = model if sampling_lora is None else with_sampling_lora(model, sampling_lora,
                                                                          sampling_lora_strength)
    lora_name = None if sampling_lora is None else os.path.basename(sampling_lora)
    plan = _plan(model, sample_model, lora_name, clip, reference_images, identity_name, class_word, prompts,
                 ti_steps, ti_learning_rate, ti_batch_size, sia_iterations, sia_learning_rate, sia_rank, reg_lambda,
                 frames, width, height, sampling_steps, training_cfg, seed, if_exists, negative_prompt,
                 gradient_checkpointing, precision, early_stop)
    result = run_or_reuse(plan, face_analysis, checkpoint_every, resume,
                          lambda stack, encoder, run, saved: _train(plan, model, sample_model, clip, vae,
                                                                    reference_images, stack, encoder,
                                                                    sample_scorer, progress_hook, run, saved))
    if not plan.token:
        result["note"] = NO_TOKEN
        log.info("[PersonalVideo] identity '%s': %s (the prompts and the trigger phrase name the class word "
                 "alone)", plan.name, NO_TOKEN)
    return result


def _train(plan: Plan, model, sample_model, clip, vae, reference_images, stack, encoder, sample_scorer,
           progress_hook, run, saved) -> dict:
    """Stage 1 on the MODEL itself when ``plan.token`` (never on the distillation LoRA's clone: the token is
    used on the MODEL), stage 2 on the samples of ``sample_model`` (each from the checkpoint ``saved`` when
    there is one), then :func:`.identity_training.finish`."""
    from ..sia import AdapterInfo, families
    from .class_word_prompts import ClassWordPrompts
    from .face.identity_loss import IdentityLoss
    from .wan_token import WanTokenPrompts, train_wan_token
    from .wan_trainer import train_wan_sia

    name, sia_settings, seed = plan.name, plan.sia, plan.sia.seed
    refs, crops = references(plan, stack, encoder, reference_images)
    ti_progress, sia_progress, interrupt = progress_callbacks(plan, progress_hook)
    stage, done, tensors, extra = resume_point(plan, saved)
    # --- stage 1: the token in umT5's input; without one (ti_steps 0) the class word names the person ---
    if plan.token:
        vector, token_prompts, ti_losses = token_stage(
            run, (stage, done, tensors, extra), lambda: WanTokenPrompts(clip, plan.class_word),
            lambda checkpoints, resume: train_wan_token(model, clip, vae, crops.images, plan.class_word, plan.ti,
                                                        ti_progress, interrupt, checkpoints=checkpoints,
                                                        resume=resume))
        trigger = setup.trigger_of(name, plan.class_word)
    else:
        vector, ti_losses, token_prompts = None, [], ClassWordPrompts(clip, plan.class_word)
        trigger = plan.class_word
    kept = {} if vector is None else {"token.vector": vector}
    # --- stage 2: the adapter, on the samples of the MODEL (with the distillation LoRA when given) ---
    info = AdapterInfo(name=name, trigger=trigger, base=families.WAN,
                       training=setup.training_info(plan.class_word, plan.rank, len(refs.faces.labels), plan.ti,
                                                    sia_settings, plan.templates, plan.record,
                                                    sampling_lora=plan.lora or "none"))
    with normal_tensors():
        adapter = setup.initial_adapter(plan.found.targets, plan.rank, seed, info)
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings)
    negative = token_prompts.conditioning(plan.negative, vector)
    if plan.lora:
        log.info("[PersonalVideo] training samples of '%s' made with the distillation LoRA %s: %d steps, cfg %g",
                 name, plan.lora, sia_settings.steps, sia_settings.cfg)
    history = train_wan_sia(sample_model, adapter, lambda text: token_prompts.conditioning(text, vector), negative,
                            vae, loss_fn, prompt_data.PromptSampler(plan.templates, seed), sia_settings,
                            progress=sia_progress, check_interrupt=interrupt,
                            checkpoints=StageCheckpoints(run, "adapter", kept, {"token_loss": ti_losses}),
                            resume=(done, tensors, extra) if stage == "adapter" and done > 0 else None)
    return finish(plan, adapter, vector, ti_losses, history, vae, reference_images, sample_scorer, run,
                  None if saved is None else (stage, done))
