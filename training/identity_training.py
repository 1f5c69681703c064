"""Training one identity from start to end: what the node, the bench and scripts all call.

:func:`train_identity` checks every input before any work, decides what to do
with an identity of the same name (``if_exists``: *reuse* it when it was trained
from the same photos, settings and MODEL, *overwrite* it, or stop with an
*error*), runs stage 1 (the token, :mod:`.textual_inversion`) and stage 2 (the
adapter, :mod:`.sia_trainer`), scores the last training sample with an
independent recogniser when one is given, writes both files (before anything
else can fail) and draws the chart.

What decides a reuse is kept in the adapter's metadata (``training.record``,
:mod:`.identity_record`), with the final training face similarity, the
independent score of the last training sample (``training.identity_score``)
and the loss / similarity history the chart is drawn from.
"""
from __future__ import annotations

import logging

import torch

from . import identity_files, identity_record, identity_setup as setup
from . import prompts as prompt_data
from .errors import TrainingError
from .inference_tensors import normal_tensors
from .run_state import DEFAULT_EVERY, RunState, StageCheckpoints
from .sia_settings import NEGATIVE_PROMPT, TRAINING_CFG

log = logging.getLogger("PersonalVideo")
IF_EXISTS = ("reuse", "overwrite", "error")
NOT_SCORED = float("nan")       # the independent score when it could not be computed (the reason is in metadata)


def _nan_for_none(values):
    return [float("nan") if v is None else float(v) for v in values]


class Plan:
    """Every checked input of one run, and the record a reuse is decided by."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _plan(model, clip, vae, reference_images, identity_name, class_word, prompts, ti_steps, ti_learning_rate,
          ti_batch_size, sia_iterations, sia_learning_rate, sia_rank, reg_lambda, frames, width, height,
          sampling_steps, seed, if_exists, training_cfg, negative_prompt, image_model, gradient_checkpointing,
          precision, early_stop=False) -> Plan:
    from . import motion_model
    from . import textual_inversion as ti
    from .checkpoint_choice import normalise
    from .base_model import check_sd15, fingerprint
    from .sia_trainer import SIATrainSettings

    name = identity_files.sanitise_name(identity_name)
    class_word = setup.check_class_word(class_word)
    if if_exists not in IF_EXISTS:
        raise TrainingError(f"if_exists must be one of {', '.join(IF_EXISTS)} (got {if_exists!r}).")
    templates = prompt_data.parse_prompts(prompts)
    found = check_sd15(model, "model")
    if image_model is not None:
        check_sd15(image_model, "image_model")
    width_ctx = int(ti.token_embedding(clip).weight.shape[-1])
    ctx = (getattr(getattr(model.model, "model_config", None), "unet_config", None) or {}).get("context_dim")
    if ctx is not None and int(ctx) != width_ctx:
        raise TrainingError(f"the CLIP gives {width_ctx}-wide text features but the MODEL expects {ctx}: connect the "
                            "CLIP of the same checkpoint as the MODEL.")
    sia_settings = SIATrainSettings(iterations=int(sia_iterations), lr=float(sia_learning_rate),
                                    reg_lambda=float(reg_lambda), steps=int(sampling_steps), frames=int(frames),
                                    width=int(width), height=int(height), seed=int(seed), cfg=float(training_cfg),
                                    gradient_checkpointing=normalise(gradient_checkpointing), precision=precision,
                                    early_stop=bool(early_stop))
    sia_settings.check()
    if not isinstance(negative_prompt, str):
        raise TrainingError(f"negative_prompt must be text (got {type(negative_prompt).__name__}).")
    motion_model.check_frames(model, sia_settings.frames)
    ti_settings = ti.TISettings(steps=int(ti_steps), lr=float(ti_learning_rate), batch_size=int(ti_batch_size),
                                seed=int(seed), gradient_checkpointing=normalise(gradient_checkpointing),
                                precision=precision)
    ti_settings.check()
    record = setup.record_of(reference_images, class_word, templates, ti_settings, sia_settings, int(sia_rank),
                             negative_prompt, fingerprint(model),
                             fingerprint(image_model)["weights"] if image_model is not None else "none")
    return Plan(name=name, class_word=class_word, templates=templates, found=found, sia=sia_settings,
                 ti=ti_settings, rank=int(sia_rank), record=record, if_exists=if_exists, negative=negative_prompt,
                 token=True)


def train_identity(model, clip, vae, reference_images, face_analysis, identity_name, class_word, prompts,
                   ti_steps=400, ti_learning_rate=1e-3, ti_batch_size=4, sia_iterations=400, sia_learning_rate=1e-4,
                   sia_rank=4, reg_lambda=1e-2, frames=16, width=512, height=512, sampling_steps=4, seed=0,
                   if_exists="reuse", checkpoint_every=DEFAULT_EVERY, resume=True, training_cfg=TRAINING_CFG,
                   negative_prompt=NEGATIVE_PROMPT, image_model=None,
                   sample_scorer=None, progress_hook=None, gradient_checkpointing="auto", precision="auto",
                   early_stop=False) -> dict:
    """Train (or reuse) identity ``identity_name``; returns a dict: ``adapter``, ``trigger``, ``curve`` and
    ``preview`` (IMAGEs), ``final_similarity`` and ``identity_score`` (floats, NaN when unknown), ``paths``,
    ``reused`` and, when trained, ``token_losses``, ``history``, ``vector`` and ``resumed_from`` (None, or
    ``(stage, steps done)`` of the checkpoint the run continued from).

    ``checkpoint_every``: iterations (and token steps) between checkpoints of the run (0: none); ``resume``:
    continue from the checkpoint an interrupted or failed run of the very same inputs left (:mod:`.run_state`).

    ``sample_scorer(frames IMAGE, reference_images) -> dict`` scores the last training sample with an
    independent recogniser (``evaluation.training_sample.score_training_sample``); its ``identity_match`` (0-100,
    50 at the recogniser's same-person threshold, strangers low) becomes ``identity_score``. It never fails the training: an error becomes the score's ``skipped`` reason.
    ``early_stop``: end stage 2 once the face similarity has plateaued (training.early_stop; off: the full
    ``sia_iterations``). ``gradient_checkpointing``: auto (by the free memory), on or off (True/False mean on/off; see
    training.checkpoint_choice). ``progress_hook(stage, i, loss, similarity)`` and ``precision`` (see
    training.precision) are for scripts, tests and benchmarks.
    """
    plan = _plan(model, clip, vae, reference_images, identity_name, class_word, prompts, ti_steps, ti_learning_rate,
                 ti_batch_size, sia_iterations, sia_learning_rate, sia_rank, reg_lambda, frames, width, height,
                 sampling_steps, seed, if_exists, training_cfg, negative_prompt, image_model, gradient_checkpointing,
                 precision, early_stop)
    return run_or_reuse(plan, face_analysis, checkpoint_every, resume,
                        lambda stack, encoder, run, saved: _train(plan, model, clip, vae, reference_images, stack,
                                                                  encoder, image_model, sample_scorer, progress_hook,
                                                                  run, saved))


def run_or_reuse(plan: Plan, face_analysis, checkpoint_every, resume, train) -> dict:
    """What both families do around the stages: reuse the identity on disk (``if_exists``), or check the names
    are free, open the run's checkpoints (and the one to resume from), load the face stack and call
    ``train(stack, encoder, run, saved)``; the face encoder goes back to the CPU afterwards."""
    from .face.analysis import load_face_stack

    taken = identity_files.existing(plan.name)
    if taken and plan.if_exists == "reuse":
        return _reuse(plan, taken)
    identity_files.check_free(plan.name, overwrite=plan.if_exists == "overwrite")
    run = RunState(plan.name, plan.record, int(checkpoint_every))
    if not resume:
        run.clear()
    saved = run.load() if resume else None
    stack = load_face_stack(face_analysis)
    encoder = stack.encoder()
    try:
        return train(stack, encoder, run, saved)
    finally:
        stack.encoder()   # the face encoder goes back to the CPU: never left on the GPU of the user's FACEANALYSIS


def _reuse(plan: Plan, taken: list) -> dict:
    """The identity already on disk, when it was trained from the same inputs; TrainingError saying what differs."""
    from ..sia.errors import SIAError
    from ..sia.file_format import load_adapter
    from .curves import note_image, render_curves
    from .token_names import with_registered_token

    paths = identity_files.identity_paths(plan.name)
    if paths["sia"] not in taken:
        raise TrainingError(
            f"a token file {paths['embedding']} exists for '{plan.name}' but no adapter {paths['sia']}, so there "
            "is nothing to reuse. Set if_exists to overwrite to train the identity, or choose another identity_name.")
    try:
        adapter = load_adapter(paths["sia"])
    except SIAError as exc:
        raise TrainingError(f"the identity '{plan.name}' exists but its adapter cannot be read ({exc}). Set "
                            "if_exists to overwrite to train it again.") from None
    stored = adapter.info.training.get(identity_record.RECORD_KEY)
    if not isinstance(stored, dict):
        raise TrainingError(
            f"the identity '{plan.name}' exists ({paths['sia']}) but holds no record of what it was trained from "
            "(an older version of the pack wrote it), so it cannot be reused safely. Set if_exists to overwrite to "
            "train it again, or choose another identity_name.")
    changed = identity_record.differences(stored, plan.record)
    if changed:
        raise TrainingError(
            f"the identity '{plan.name}' exists but was trained from other inputs: " + "; ".join(changed)
            + ". Set if_exists to overwrite to train it again with these, or choose another identity_name "
            "to keep both.")
    written = None
    if plan.token:
        if adapter.embedding is None:
            raise TrainingError(f"the adapter {paths['sia']} carries no token. Set if_exists to overwrite to train "
                                "the identity again.")
        adapter, written = with_registered_token(adapter, paths["sia"])
    log.info("[PersonalVideo] identity '%s' reused: it was trained from the same photos, settings and MODEL "
             "(%s); its trigger phrase is '%s'%s", plan.name, paths["sia"], adapter.info.trigger,
             f"; its token file was missing and is written again: {written}" if written else "")
    history = adapter.info.training.get("history", {})
    curve = render_curves({"token loss": _nan_for_none(history.get("token_loss", [])),
                           "adapter loss": _nan_for_none(history.get("adapter_loss", [])),
                           "face similarity": _nan_for_none(history.get("similarity", []))})
    preview = note_image(f"'{plan.name}' reused: trained earlier from the same inputs, no new frames",
                         plan.sia.width, plan.sia.height)
    return {"adapter": adapter, "trigger": adapter.info.trigger, "curve": curve, "preview": preview,
            "paths": paths, "reused": True, **_scores(adapter.info.training)}


def _scores(training: dict) -> dict:
    final = training.get("final_similarity")
    score = (training.get("identity_score") or {}).get("identity_match")   # files of before it was kept: NaN
    return {"final_similarity": NOT_SCORED if final is None else float(final),
            "identity_score": NOT_SCORED if score is None else float(score)}


def _train(plan: Plan, model, clip, vae, reference_images, stack, encoder, image_model, sample_scorer,
           progress_hook, run: RunState, saved) -> dict:
    """Both stages (from the checkpoint ``saved`` when there is one), then the files (first), then the chart."""
    from ..sia import AdapterInfo, naming
    from . import textual_inversion as ti
    from .face.identity_loss import IdentityLoss
    from .sia_trainer import train_sia

    name, sia_settings, ti_settings, seed = plan.name, plan.sia, plan.ti, plan.sia.seed
    refs, crops = references(plan, stack, encoder, reference_images)
    ti_progress, sia_progress, interrupt = progress_callbacks(plan, progress_hook)
    stage, done, tensors, extra = resume_point(plan, saved)
    # --- stage 1: the token, on single images (never through the motion model) ---
    if stage == "adapter":
        vector, ti_losses = tensors["token.vector"].reshape(-1).float(), list(extra.get("token_loss", []))
        token_prompts = ti.TokenPrompts(clip, plan.class_word)
    else:
        vector, token_prompts, ti_losses = ti.train_token(
            image_model if image_model is not None else model, clip, vae, crops.images, plan.class_word,
            ti_settings, ti_progress, interrupt, checkpoints=StageCheckpoints(run, "token"),
            resume=(done, tensors, extra) if stage == "token" else None)
        if run.every > 0:
            run.save("adapter", 0, {"token.vector": vector}, {"token_loss": ti_losses})
    # --- stage 2: the adapter ---
    trigger = setup.trigger_of(name, plan.class_word)
    try:
        res_blocks = naming.uniform_res_blocks(model.model.model_config.unet_config.get("num_res_blocks", 2))
    except ValueError as exc:
        raise TrainingError(f"the model input has a UNet layout the adapter cannot name ({exc}): connect an SD1.5 "
                            "checkpoint.") from None
    info = AdapterInfo(name=name, trigger=trigger, num_res_blocks=res_blocks,
                       training=setup.training_info(plan.class_word, plan.rank, len(refs.faces.labels), ti_settings,
                                                    sia_settings, plan.templates, plan.record))
    with normal_tensors():
        adapter = setup.initial_adapter(plan.found.targets, plan.rank, seed, info)
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings)
    negative = token_prompts.conditioning(plan.negative, vector)
    history = train_sia(model, adapter, lambda text: token_prompts.conditioning(text, vector), negative, vae,
                        loss_fn, prompt_data.PromptSampler(plan.templates, seed), sia_settings, sia_progress,
                        interrupt, checkpoints=StageCheckpoints(run, "adapter", {"token.vector": vector},
                                                                {"token_loss": ti_losses}),
                        resume=(done, tensors, extra) if stage == "adapter" and done > 0 else None)
    return finish(plan, adapter, vector, ti_losses, history, vae, reference_images, sample_scorer, run,
                  None if saved is None else (stage, done))


def references(plan: Plan, stack, encoder, reference_images):
    """The reference faces' embeddings and the face-centred crops at the training size (logged)."""
    from .face.references import training_crops

    refs = setup.reference_embeddings(stack.detector, encoder, reference_images, plan.sia.seed)
    crops = training_crops(reference_images, refs.faces, plan.sia.width, plan.sia.height)
    log.info("[PersonalVideo] training identity '%s': %s", plan.name, refs.faces.summary())
    return refs, crops


def progress_callbacks(plan: Plan, progress_hook):
    """(token progress, adapter progress, Cancel check) of a run: ComfyUI's progress bar and preview, the log,
    and ``progress_hook(stage, i, loss, similarity)`` when given."""
    import comfy.model_management

    from .progress import TrainingProgress

    ti_settings, sia_settings = plan.ti, plan.sia
    shown = TrainingProgress(ti_settings.steps, sia_settings.iterations)

    def ti_progress(step, loss):
        shown.token_step(step, loss)
        if progress_hook:
            progress_hook("token", step, loss, float("nan"))
        if step % 50 == 0 or step == ti_settings.steps - 1:
            log.info("[PersonalVideo] token step %d/%d: loss %.4f", step + 1, ti_settings.steps, loss)

    def sia_progress(it, loss, sim, frame=None):
        shown.adapter_iteration(it, loss, sim, frame)
        if progress_hook:
            progress_hook("adapter", it, loss, sim)
        if it % 10 == 0 or it == sia_settings.iterations - 1:
            log.info("[PersonalVideo] adapter iteration %d/%d: loss %.4f, face similarity %.3f",
                     it + 1, sia_settings.iterations, loss, sim)

    return ti_progress, sia_progress, comfy.model_management.throw_exception_if_processing_interrupted


def resume_point(plan: Plan, saved):
    """(stage, done, tensors, extra) of the checkpoint ``saved`` (logged), or a fresh start's."""
    stage, done, tensors, extra = saved or (None, 0, {}, {})
    if saved is not None:
        log.info("[PersonalVideo] identity '%s': resuming from the checkpoint of an earlier run (%s stage, %d "
                 "done)", plan.name, stage, done)
    return stage, done, tensors, extra


def finish(plan: Plan, adapter, vector, ti_losses, history, vae, reference_images, sample_scorer, run: RunState,
           resumed_from) -> dict:
    """After stage 2: the trained adapter's copy (with the token ``vector``, or none when ``vector`` is None),
    the last training sample decoded and scored, the files written (before anything else can fail), the
    checkpoints removed, then the preview frames and the chart; the run's result dict."""
    import comfy.model_management

    from .curves import render_curves

    name, sia_settings = plan.name, plan.sia
    comfy.model_management.throw_exception_if_processing_interrupted()
    trained = adapter.detached_copy()
    if vector is not None:
        trained.embedding = vector.detach().float().reshape(1, -1).clone()
    preview, late_error = None, None
    try:
        with torch.no_grad():
            preview = vae.decode(history.last_latent)
        preview = preview.reshape((-1,) + tuple(preview.shape[-3:]))
    except Exception as exc:   # the files are still written below; the error is told after that
        late_error = exc
    score = setup.score_sample(sample_scorer, preview, reference_images)
    final = setup.add_results(trained.info.training, ti_losses, history, score)
    # results first: the files are written before anything else can fail
    paths = identity_files.write_identity(name, trained, vector, overwrite=True)
    trained.source = paths["sia"]
    run.clear()
    written = ", ".join(paths.values())
    log.info("[PersonalVideo] identity '%s' saved: %s (%d of %d frames without a face); final face "
             "similarity %s, independent score %s", name, written, history.skipped,
             sia_settings.iterations, final,
             f"{score.get('verdict', 'scored')}, identity match {score['identity_match']:.0f}/100"
             if score.get("identity_match") is not None else score.get("skipped", "none"))
    try:
        if late_error is not None:
            raise late_error
        if history.snapshots:   # trained frames from earlier points of the run first, then the last video
            earlier = torch.cat([frame.movedim(1, -1) for _, frame in history.snapshots], 0)
            preview = torch.cat([earlier.to(preview.device, preview.dtype), preview], 0)
        curve = render_curves({"token loss": ti_losses, "adapter loss": history.loss,
                               "face similarity": history.similarity},
                              stopped_at=(history.early_stop or {}).get("stopped_at"), smoothed=history.smoothed)
    except Exception as exc:
        how = (f"load it with 'Load SIA Adapter' and write 'embedding:{name}' in the prompt" if vector is not None
               else "load it with 'Load SIA Adapter'")
        raise TrainingError(
            f"the identity '{name}' is trained and saved ({' and '.join(paths.values())}), but making "
            f"the preview frames or the loss curve failed afterwards ({type(exc).__name__}: {exc}). The saved "
            f"identity is complete: {how}; no need to train again.") from exc
    return {"adapter": trained, "trigger": trained.info.trigger, "curve": curve, "preview": preview, "paths": paths,
            "reused": False, "token_losses": ti_losses, "history": history, "vector": vector,
            "resumed_from": resumed_from, **_scores(trained.info.training)}

