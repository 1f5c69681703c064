"""Stage 2: training the Spatial Identity Adapter with the non-reconstructive identity loss.

Per iteration (paper, Sec. 3): draw a simulated prompt with the identity token;
start from pure noise (frames x height x width); run the few-step LCM schedule
through ComfyUI's sampling (:mod:`.few_step_sampler`) with the adapter only in
the last step, at guidance ``cfg`` with the negative prompt (as the video will
be generated); decode one random frame with gradient; loss = identity loss
(1 - cosine to the reference faces) + lambda * ||adapter - initial adapter||^2;
AdamW on the adapter parameters only.

Models: ComfyUI's memory manager loads the MODEL and the VAE before each
gradient step (:mod:`.few_step_sampler`); the gradient step itself reads their
weights in place, never copying or swapping them (:mod:`.inference_tensors`).

Memory: gradient checkpointing of the gradient step (UNet layers, motion
modules, VAE decoder blocks), chosen by the free memory unless forced
(:mod:`.checkpoint_choice`), and the model's own half precision on a GPU (autocast
only for a model ComfyUI runs in fp32) with fp32 adapter weights and optimiser state (:mod:`.precision`).

Frames with no face are skipped (no optimiser step) and counted; when most
iterations have none the run stops with a clear message.  Everything random
comes from the seed, one independent stream per purpose (prompt choice, noise,
frame index; :mod:`.random_streams`), so a run is deterministic on one machine.

Cancel: ``check_interrupt`` runs before every layer of the UNet and the VAE
decoder (so inside each model evaluation), between the steps of the few-step
schedule, and between the decode, the loss and the optimiser step.
"""
from __future__ import annotations

import logging
import math
import torch

from ..sia import apply_sia
from . import precision as amp
from .checkpoint_choice import CheckpointChoice
from .early_stop import EarlyStop
from .checkpointing import regions_of
from .devices import compute_dtype_of, device_of
from .errors import TrainingError
from .few_step_sampler import FewStepTrainingSampler, lcm_schedule, lcm_step, run_few_steps
from .inference_tensors import aliasing, normal_tensors
from .interruption import checked_in_layers
from .identity_setup import frame_stream, iteration_generator
from .sia_settings import SIAHistory, SIATrainSettings, adapter_optimizer, flat_copy, reg_term  # noqa: F401  (the trainer's public names)

log = logging.getLogger("PersonalVideo")


def snapshot_iterations(iterations: int, points: int = 4) -> set:
    """The iterations whose trained frame is kept for the preview: the start and every 1/points of the run
    (the last iteration gives its whole video anyway)."""
    return {round(k * (iterations - 1) / points) for k in range(points)} - {iterations - 1}


def decode_latent(vae, base_model, z):
    """``z`` decoded by the VAE's own decoder, pixels in 0..1, with gradient; the VAE was loaded before the
    gradient window. The latent format's constants are inference tensors no module holds (Wan's per-channel
    mean and std): that one operation reads them through aliases."""
    dev = getattr(vae, "device", z.device)
    dtype = getattr(vae, "vae_dtype", z.dtype)
    with aliasing():
        latent = base_model.process_latent_out(z)
    pixels = vae.first_stage_model.decode(latent.to(dev, dtype))
    return vae.process_output(pixels.float())


class SD15Backbone:
    """What the stage-2 loop needs to know about the model family it trains on; here SD1.5 / AnimateDiff:
    the LCM schedule and update, a batch of ``frames`` 4-channel latents, one random frame decoded alone.
    (:mod:`.wan_trainer` gives the Wan counterpart.)"""

    model_hint = "use an SD1.5 model that makes people"
    step = staticmethod(lcm_step)

    def schedule(self, patched, settings):
        return lcm_schedule(patched, settings.steps, settings.scheduler)

    def latent_shape(self, settings):
        return (settings.frames, 4, settings.height // 8, settings.width // 8)

    def loss_frames(self, settings) -> int:
        """How many frames the trained frame is drawn from."""
        return settings.frames

    def decode(self, vae, base_model, denoised, frame):
        """Frame ``frame`` of the denoised latents, [1, 3, H, W] in 0..1, with gradient."""
        return decode_latent(vae, base_model, denoised[frame:frame + 1])

    def cancel_layers(self, diffusion_model, first_stage_model):
        """The layers before each of which Cancel is looked at."""
        return regions_of(diffusion_model, first_stage_model)


def train_sia(model, adapter, encode_prompt, negative, vae, identity_loss, prompts, settings: SIATrainSettings,
              progress=None, check_interrupt=None, checkpoints=None, resume=None, backbone=None) -> SIAHistory:
    """Train ``adapter`` (in place; its tensors must be fp32 leaf Parameters) on ``model``.

    ``encode_prompt(text) -> CONDITIONING`` (normal tensors); ``prompts`` a
    :class:`~.prompts.PromptSampler`; ``progress(i, loss, similarity, frame)``
    after each iteration, ``frame`` the decoded trained frame [1, 3, H, W] in 0..1
    (None when skipped); ``check_interrupt()`` raises to cancel.  ``model`` is
    never changed: the adapter goes on a clone. ``checkpoints``: a :class:`~.run_state.StageCheckpoints`
    written to when due (and before a no-face stop); ``resume``: ``(iterations done, tensors, extra)`` of such a
    checkpoint, from which training continues exactly (the draws made are replayed). ``backbone``: the model
    family's schedule, latents and decode (:class:`SD15Backbone` when None; :mod:`.wan_trainer` for Wan).
    """
    from .run_state import optimizer_tensors, restore_optimizer

    settings.check()
    backbone = backbone or SD15Backbone()
    precision = amp.resolve(settings.precision, device_of(model), compute_dtype_of(model))
    params = adapter.parameters()
    with normal_tensors():
        for p in params:
            if not (isinstance(p, torch.nn.Parameter) and p.requires_grad and p.dtype == torch.float32):
                raise TrainingError("internal: adapter weights must be trainable fp32 parameters")
        initial = flat_copy(params)
        optimizer = adapter_optimizer(params, settings)
    history = SIAHistory(precision=precision.name)
    stopper = EarlyStop() if settings.early_stop else None
    start = 0
    if resume is not None:
        start, tensors, extra = resume
        with normal_tensors(), torch.no_grad():
            for i, p in enumerate(params):
                p.copy_(tensors[f"sia.{i}"].reshape(p.shape))
        restore_optimizer(optimizer, params, tensors, "sia.adamw")
        history.loss = list(extra.get("adapter_loss", []))[:start]
        history.similarity = list(extra.get("similarity", []))[:start]
        precision.restore_scaler(extra.get("adapter_grad_scaler"))
        history.skipped = sum(1 for v in history.loss if math.isnan(v))
        if stopper is not None:
            stopper.replay(history.similarity)

    def state():
        return ({**{f"sia.{i}": p for i, p in enumerate(params)}, **optimizer_tensors(optimizer, params, "sia.adamw")},
                {"adapter_loss": history.loss, "similarity": history.similarity,
                 "adapter_grad_scaler": precision.scaler_state()})
    patched, _, _ = apply_sia(model, adapter, 1.0, start_percent=1.0)  # adapter on the last step only
    choice = CheckpointChoice(settings.gradient_checkpointing, device_of(model), "adapter stage")
    sigmas = backbone.schedule(patched, settings)
    base_model = patched.model
    layers = backbone.cancel_layers(base_model.diffusion_model, vae.first_stage_model)
    frames_rng = frame_stream(settings.seed)
    check = check_interrupt or (lambda: None)
    shape = backbone.latent_shape(settings)
    conditionings = {}  # the token is fixed in this stage: each prompt is encoded once (the sampler copies conds)
    keep = snapshot_iterations(settings.iterations)
    for _ in range(start):   # the draws the resumed iterations made, so the rest continue the same streams
        prompts.draw()
        frames_rng.randrange(backbone.loss_frames(settings))
    for it in range(start, settings.iterations):
        check()
        text = prompts.draw()
        if text not in conditionings:
            conditionings[text] = encode_prompt(text)
        positive = conditionings[text]
        frame = frames_rng.randrange(backbone.loss_frames(settings))
        with normal_tensors():
            gen = iteration_generator(settings.seed, it)
            iter_seed = gen.initial_seed()
            noise = torch.randn(shape, generator=gen)
        record = {}

        def last_step(denoised, frame=frame, record=record, it=it):
            with precision.autocast():
                pixels = backbone.decode(vae, base_model, denoised, frame)
            record["frame"] = pixels.detach()
            check()
            with precision.full():
                out = identity_loss(pixels)
                record["similarity"] = out.mean_similarity
                if not out.has_face:
                    record["loss"] = float("nan")
                    return
                total = out.loss + settings.reg_lambda * reg_term(params, initial)
            check()
            optimizer.zero_grad(set_to_none=True)
            if not precision.backward_and_step(total, optimizer):
                log.info("[PersonalVideo] adapter iteration %d: fp16 gradients overflowed, so the gradient scaler "
                         "skipped this step and lowered its scale (normal in the first few iterations)", it + 1)
            record["loss"] = float(total.detach())

        sampler = FewStepTrainingSampler(last_step, gen, extra_modules=(vae.first_stage_model,),
                                         gradient_checkpointing=choice.enabled, spared=choice.spared,
                                         autocast=precision.autocast, load_first=(patched, vae.patcher),
                                         between_steps=check, step=backbone.step)
        with checked_in_layers(layers, check), choice.measured():
            latent = run_few_steps(patched, sampler, sigmas, positive, negative, noise, iter_seed, settings.cfg)
        if it in keep and record.get("frame") is not None:
            history.snapshots.append((it, record["frame"].float().cpu()))
        history.loss.append(record.get("loss", float("nan")))
        history.similarity.append(record.get("similarity", float("nan")))
        if math.isnan(history.loss[-1]):
            history.skipped += 1
        done = it + 1
        if done >= min(settings.no_face_check_after, settings.iterations) and \
                history.skipped > settings.max_no_face_fraction * done:
            kept = ""
            if checkpoints is not None and checkpoints.enabled and done > 1:
                checkpoints.save(done, *state())
                kept = (f" The {done} iterations so far are kept in a checkpoint: queueing again with the same "
                        "inputs and resume on continues from there.")
            raise TrainingError(
                f"no face was found in the generated frame of {history.skipped} of {done} training iterations, "
                "so the identity loss cannot train the adapter. The prompts, the class word or the MODEL are "
                f"probably wrong: {backbone.model_hint}, keep '{{token}} {{class_word}}' in every "
                "prompt, and a class word such as man, woman or person." + kept)
        if progress is not None:
            progress(it, history.loss[-1], history.similarity[-1], record.get("frame"))
        stop = stopper is not None and stopper.update(history.similarity) and it < settings.iterations - 1
        if stop:
            log.info("[PersonalVideo] adapter stage stopped early after %d of %d iterations: the face similarity "
                     "has not risen for %d iterations (early_stop)", done, settings.iterations, stopper.patience)
        if it == settings.iterations - 1 or stop:
            history.last_latent = latent.detach()
        elif checkpoints is not None and checkpoints.due(done, settings.iterations):
            checkpoints.save(done, *state())
        log.debug("[PersonalVideo] SIA iteration %d/%d: loss %.4f, similarity %.4f (%s)", done,
                  settings.iterations, history.loss[-1], history.similarity[-1], text)
        if stop:
            break
    if stopper is not None:
        history.early_stop, history.smoothed = stopper.to_json(), list(stopper.smoothed)
    return history
