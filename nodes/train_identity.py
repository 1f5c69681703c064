"""Node: Train PersonalVideo Identity (textual-inversion token + Spatial Identity Adapter)."""
from __future__ import annotations

import logging
import math

import torch

from ..sia import AdapterInfo, SIAAdapter, discover_targets, naming
from ..sia.adapter import DEFAULT_START_PERCENT
from ..training import identity_files, prompts as prompt_data
from ..training.errors import TrainingError

CATEGORY = "PersonalVideo"
log = logging.getLogger("PersonalVideo")
REFERENCE_AUGMENT_COPIES = 2   # colour-jittered copies of each reference face (paper: augmentation of references)


def _tip(text):
    return {"tooltip": text}


class TrainPersonalVideoIdentity:
    DESCRIPTION = (
        "Learns an identity from one or a few photos, on the very MODEL you generate with: a token "
        "(textual inversion, saved to models/embeddings) and a Spatial Identity Adapter trained with a face "
        "identity loss on videos the model generates (saved to models/sia). The MODEL, CLIP and VAE you "
        "connect are not changed."
    )
    CATEGORY = CATEGORY
    FUNCTION = "train"
    OUTPUT_NODE = True
    RETURN_TYPES = ("SIA_ADAPTER", "STRING", "IMAGE", "IMAGE")
    RETURN_NAMES = ("sia_adapter", "trigger_phrase", "loss_curve", "preview_frames")
    OUTPUT_TOOLTIPS = (
        "The trained adapter, ready for 'Apply SIA at Late Steps' (also saved in models/sia).",
        "Put this in your prompt, e.g. 'embedding:alice woman': it calls the trained token.",
        "Loss of both stages and face similarity of the trained frames over the iterations.",
        "All frames of the last training sample.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", _tip("The SD1.5 MODEL you will generate with, normally with AnimateDiff-Evolved's "
                                        "AnimateLCM motion model attached. It is not changed.")),
                "clip": ("CLIP", _tip("The CLIP of the same SD1.5 checkpoint.")),
                "vae": ("VAE", _tip("The VAE of the same checkpoint.")),
                "reference_images": ("IMAGE", _tip(
                    "One or a few photos of the person, any size and shape (a batch or an image list); one clearly "
                    "visible face each. Stage 1 trains on face-centred crops at width x height.")),
                "face_analysis": ("FACEANALYSIS", _tip("From 'Load Face Analysis (PersonalVideo)' or a PuLID / "
                                                       "InstantID insightface loader (antelopev2).")),
                "identity_name": ("STRING", {"default": "my_identity", "tooltip":
                                             "File name for models/sia and models/embeddings, and the embedding "
                                             "name in prompts (letters, digits, '-', '_')."}),
                "class_word": ("STRING", {"default": "person", "tooltip":
                                          "What the person is: man, woman, person, boy, girl... The token starts "
                                          "from this word and every prompt uses it."}),
                # dynamicPrompts off: older frontends otherwise read {token} as a {a|b} choice and drop the braces
                "prompts": ("STRING", {"default": prompt_data.default_prompts_text(), "multiline": True,
                                       "dynamicPrompts": False, "tooltip":
                                       "Simulated prompts, one per line, with {token} and {class_word}; one is "
                                       "drawn per adapter iteration. Defaults to the pack's 50 prompts."}),
                "ti_steps": ("INT", {"default": 400, "min": 0, "max": 10000, "tooltip":
                                     "Textual-inversion steps (stage 1). Paper: 400. 0 keeps the class word's vector."}),
                "ti_learning_rate": ("FLOAT", {"default": 1e-3, "min": 0.0, "max": 1.0, "step": 1e-4, "tooltip":
                                               "Learning rate of the token (paper: 1e-3)."}),
                "ti_batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip":
                                          "Reference photos per textual-inversion step (paper: 4)."}),
                "sia_iterations": ("INT", {"default": 400, "min": 1, "max": 10000, "tooltip":
                                           "Adapter iterations (stage 2), one generated video each. Paper: 400."}),
                "sia_learning_rate": ("FLOAT", {"default": 1e-4, "min": 0.0, "max": 1.0, "step": 1e-5, "tooltip":
                                                "AdamW learning rate of the adapter (paper: 1e-4)."}),
                "sia_rank": ("INT", {"default": 4, "min": 1, "max": 128, "tooltip":
                                     "LoRA rank of the adapter (q/k/v of spatial self-attention)."}),
                "reg_lambda": ("FLOAT", {"default": 1e-2, "min": 0.0, "max": 100.0, "step": 1e-3, "tooltip":
                                         "Weight of ||adapter - initial||^2, which keeps the adapter close to a "
                                         "no-op (paper's weight-space regularisation)."}),
                "frames": ("INT", {"default": 16, "min": 1, "max": 64, "tooltip":
                                   "Frames of each training video (16 for AnimateDiff). At most what the motion "
                                   "model takes at once (AnimateDiff v2/v3: 32, AnimateLCM: 64) unless context "
                                   "options are attached; checked before training starts."}),
                "width": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8, "tooltip":
                                  "Width of the training videos."}),
                "height": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8, "tooltip":
                                   "Height of the training videos."}),
                "sampling_steps": ("INT", {"default": 4, "min": 2, "max": 50, "tooltip":
                                           "LCM steps per training video (paper: 4); the adapter trains on the last."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip":
                                 "Same seed, same machine: same result."}),
                "overwrite": ("BOOLEAN", {"default": False, "tooltip":
                                          "Replace an existing identity of the same name."}),
            },
            "optional": {
                "image_model": ("MODEL", _tip("Optional plain SD1.5 MODEL (without motion model) for the "
                                              "textual-inversion stage; the MODEL above is used when empty.")),
            },
        }

    # reference photos may come as an image list (several Load Image nodes, different sizes): the node then
    # gets every input as a list; all but reference_images hold one value
    INPUT_IS_LIST = True

    def train(self, **inputs):
        kwargs = {k: (v[0] if isinstance(v, list) and k != "reference_images" and v else v)
                  for k, v in inputs.items()}
        result = train_identity(**kwargs)
        return {"ui": {"text": [result["trigger"]]},
                "result": (result["adapter"], result["trigger"], result["curve"], result["preview"])}


def _check_model(model, what):
    import comfy.supported_models

    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if diffusion_model is None:
        raise TrainingError(f"the {what} input is not a diffusion MODEL; connect an SD1.5 MODEL.")
    config = getattr(model.model, "model_config", None)
    if config is not None and not isinstance(config, comfy.supported_models.SD15):
        raise TrainingError(f"the {what} input is not an SD1.5-family model (it is {type(config).__name__}). "
                            "PersonalVideo trains on SD1.5 / AnimateDiff models only: load an SD1.5 checkpoint.")
    found = discover_targets(diffusion_model)
    if not found.targets:
        raise TrainingError(f"the {what} input is not an SD1.5-family model ({found.summary()}). PersonalVideo "
                            "trains on SD1.5 / AnimateDiff models only: load an SD1.5 checkpoint.")
    return found


def train_identity(model, clip, vae, reference_images, face_analysis, identity_name, class_word, prompts,
                   ti_steps=400, ti_learning_rate=1e-3, ti_batch_size=4, sia_iterations=400, sia_learning_rate=1e-4,
                   sia_rank=4, reg_lambda=1e-2, frames=16, width=512, height=512, sampling_steps=4, seed=0,
                   overwrite=False, image_model=None, progress_hook=None, gradient_checkpointing=True,
                   precision="auto"):
    """The node's work. ``progress_hook(stage, i, loss, similarity)``, ``gradient_checkpointing`` and
    ``precision`` (see training.precision) are for scripts, tests and benchmarks, not node inputs."""
    from ..training import motion_model
    from ..training import textual_inversion as ti
    from ..training.face.analysis import load_face_stack
    from ..training.sia_trainer import SIATrainSettings

    # --- every check before any work ---
    name = identity_files.sanitise_name(identity_name)
    class_word = (class_word or "").strip()
    if not class_word or "\n" in class_word or "{" in class_word:
        raise TrainingError("class_word must be a plain word or two such as man, woman or person.")
    templates = prompt_data.parse_prompts(prompts)
    identity_files.check_free(name, overwrite)
    found = _check_model(model, "model")
    if image_model is not None:
        _check_model(image_model, "image_model")
    width_ctx = int(ti.token_embedding(clip).weight.shape[-1])
    ctx = (getattr(getattr(model.model, "model_config", None), "unet_config", None) or {}).get("context_dim")
    if ctx is not None and int(ctx) != width_ctx:
        raise TrainingError(f"the CLIP gives {width_ctx}-wide text features but the MODEL expects {ctx}: connect the "
                            "CLIP of the same checkpoint as the MODEL.")
    sia_settings = SIATrainSettings(iterations=int(sia_iterations), lr=float(sia_learning_rate),
                                    reg_lambda=float(reg_lambda), steps=int(sampling_steps), frames=int(frames),
                                    width=int(width), height=int(height), seed=int(seed),
                                    gradient_checkpointing=bool(gradient_checkpointing), precision=precision)
    sia_settings.check()
    motion_model.check_frames(model, sia_settings.frames)
    ti_settings = ti.TISettings(steps=int(ti_steps), lr=float(ti_learning_rate), batch_size=int(ti_batch_size),
                                seed=int(seed), gradient_checkpointing=bool(gradient_checkpointing),
                                precision=precision)
    ti_settings.check()
    stack = load_face_stack(face_analysis)
    encoder = stack.encoder()
    try:
        return _train(name, class_word, templates, found, model, clip, vae, reference_images, stack, encoder,
                      sia_settings, ti_settings, int(sia_rank), overwrite, image_model, progress_hook)
    finally:
        stack.encoder()   # the face encoder goes back to the CPU: never left on the GPU of the user's FACEANALYSIS


def _train(name, class_word, templates, found, model, clip, vae, reference_images, stack, encoder, sia_settings,
           ti_settings, sia_rank, overwrite, image_model, progress_hook):
    """Both stages, then the files (first), then the preview and the curve."""
    import comfy.model_management

    from ..training import textual_inversion as ti
    from ..training.curves import render_curves
    from ..training.face.identity_loss import IdentityLoss
    from ..training.face.references import embed_references, training_crops
    from ..training.progress import TrainingProgress
    from ..training.sia_trainer import train_sia

    seed = sia_settings.seed
    refs = embed_references(stack.detector, encoder, reference_images, augment_copies=REFERENCE_AUGMENT_COPIES,
                            seed=int(seed))
    crops = training_crops(reference_images, refs.faces, sia_settings.width, sia_settings.height)
    log.info("[PersonalVideo] training identity '%s': %s", name, refs.faces.summary())

    shown = TrainingProgress(ti_settings.steps, sia_settings.iterations)
    interrupt = comfy.model_management.throw_exception_if_processing_interrupted

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

    # --- stage 1: the token, on single images (never through the motion model) ---
    vector, token_prompts, ti_losses = ti.train_token(image_model if image_model is not None else model, clip, vae,
                                                      crops.images, class_word, ti_settings, ti_progress,
                                                      interrupt)
    # --- stage 2: the adapter ---
    trigger = f"embedding:{name} {class_word}"
    info = AdapterInfo(name=name, trigger=trigger, start_percent=DEFAULT_START_PERCENT,
                       num_res_blocks=naming.uniform_res_blocks(model.model.model_config.unet_config.get("num_res_blocks", 2)),
                       training={"method": "PersonalVideo", "class_word": class_word, "rank": int(sia_rank),
                                 "references": len(refs.faces.labels), "textual_inversion": ti_settings.to_json(),
                                 "sia": sia_settings.to_json(), "prompts": len(templates)})
    with torch.inference_mode(False):
        adapter = SIAAdapter.initialise(found.targets, rank=int(sia_rank), seed=int(seed), info=info)
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings)
    negative = token_prompts.conditioning("", vector)
    history = train_sia(model, adapter, lambda text: token_prompts.conditioning(text, vector), negative, vae,
                        loss_fn, prompt_data.PromptSampler(templates, int(seed)), sia_settings, sia_progress,
                        interrupt)
    interrupt()
    trained = adapter.detached_copy()
    trained.embedding = vector.detach().float().reshape(1, -1).clone()
    trained.info.training["skipped_frames"] = history.skipped
    trained.info.training["precision"] = history.precision
    trained.info.training["final_similarity"] = _last_finite(history.similarity)
    # results first: the files are written before anything else can fail
    paths = identity_files.write_identity(name, trained, vector, overwrite=overwrite)
    trained.source = paths["sia"]
    log.info("[PersonalVideo] identity '%s' saved: %s, %s (%d of %d frames without a face)", name, paths["sia"],
             paths["embedding"], history.skipped, sia_settings.iterations)
    try:
        with torch.no_grad():
            preview = vae.decode(history.last_latent)
        preview = preview.reshape((-1,) + tuple(preview.shape[-3:]))
        curve = render_curves({"token loss": ti_losses, "adapter loss": history.loss,
                               "face similarity": history.similarity})
    except Exception as exc:
        raise TrainingError(
            f"the identity '{name}' is trained and saved ({paths['sia']} and {paths['embedding']}), but making "
            f"the preview frames or the loss curve failed afterwards ({type(exc).__name__}: {exc}). The saved "
            f"identity is complete: load it with 'Load SIA Adapter' and write 'embedding:{name}' in the prompt; "
            "no need to train again.") from exc
    return {"adapter": trained, "trigger": trigger, "curve": curve, "preview": preview, "paths": paths,
            "token_losses": ti_losses, "history": history, "vector": vector}


def _last_finite(values):
    finite = [v for v in values if math.isfinite(v)]
    return finite[-1] if finite else None


NODES = (("PV_TrainIdentity", TrainPersonalVideoIdentity, "Train PersonalVideo Identity"),)
