"""What `personalvideo train` and `generate` run with ``--backbone wan``: the models, the settings, the run.

The models come from a local diffusers Wan text-to-video folder (``transformer/``, ``vae/``, ``text_encoder/``,
``tokenizer/``: e.g. Wan2.1-T2V-1.3B-Diffusers), given as ``--checkpoint`` (a path, or a folder name in
``<ComfyUI>/models/diffusers``).  Training is the adapter stage only (:mod:`.wan_train`: there is no token
stage on Wan in the engine); the samples are made as the node makes them without a distillation LoRA
(:data:`..training.wan_identity_training.WITHOUT_LORA`: 8 Euler steps at cfg 5).  Generation is
:mod:`.wan_generate`.  Nothing here parses arguments or prints.
"""
from __future__ import annotations

import os

from .errors import EngineError

TRAIN_DEFAULTS = dict(frames=17, width=448, height=448)      # WanSIATrainSettings' (the node's) defaults
GENERATE_DEFAULTS = dict(frames=17, width=448, height=448, steps=30, cfg=5.0)


def check_arguments(args, training: bool) -> None:
    """The SD1.5-only options, refused by name."""
    for option, value in (("--motion-model", args.motion_model), ("--tokenizer", args.tokenizer)):
        if value:
            raise EngineError(f"{option} is for --backbone sd15; with --backbone wan the diffusers Wan folder given as "
                              f"--checkpoint holds the VAE, umT5 and its tokenizer. Leave {option} out.")
    if training and getattr(args, "ti_steps", None):
        raise EngineError("--ti-steps: the engine has no token stage on Wan yet (the adapter is trained with the class "
                          "word alone). Leave --ti-steps out or set it to 0.")


def model_folder(args) -> str:
    """``--checkpoint`` as a folder: a path, or a name in ``<ComfyUI>/models/diffusers``."""
    path = args.checkpoint
    if not os.path.isdir(path) and args.comfyui_root:
        named = os.path.join(args.comfyui_root, "models", "diffusers", path)
        if os.path.isdir(named):
            return named
    if os.path.isfile(path):
        raise EngineError(f"--checkpoint {path!r} is a file: with --backbone wan give a diffusers Wan text-to-video "
                          "folder (transformer/, vae/, text_encoder/, tokenizer/), e.g. Wan2.1-T2V-1.3B-Diffusers.")
    return path


def load_models(args, device, dtype):
    """The Wan models of ``--checkpoint`` on ``device`` in ``dtype`` (frozen)."""
    from .wan_models import load_wan_folder

    models = load_wan_folder(model_folder(args), shift=float(args.shift))
    if getattr(models.transformer.config, "image_dim", None):
        raise EngineError(f"{models.source} is an image-to-video Wan model; the engine trains and generates with "
                          "text-to-video Wan (T2V 1.3B / 14B, TI2V 5B).")
    return models.to(device, dtype).freeze()


def train_settings(args):
    from ..training.sia_settings import WanSIATrainSettings
    from ..training.wan_identity_training import WITHOUT_LORA

    steps, cfg = WITHOUT_LORA
    return WanSIATrainSettings(
        iterations=int(args.sia_iterations), lr=float(args.sia_lr), reg_lambda=float(args.reg_lambda),
        steps=int(args.sampling_steps or steps), frames=int(args.frames), width=int(args.width),
        height=int(args.height), seed=int(args.seed), precision=str(args.precision),
        cfg=float(cfg if args.training_cfg is None else args.training_cfg),
        gradient_checkpointing=str(args.gradient_checkpointing))


def train(args, progress=None) -> dict:
    """Train one identity's adapter on Wan (``personalvideo train --backbone wan``)."""
    import torch

    from .faces import load_face_stack
    from .train_job import faces_folder, models_dir_of, read_prompts, resolve_device
    from .wan_train import train_wan_identity

    check_arguments(args, training=True)
    settings = train_settings(args)
    settings.check()
    device = resolve_device(args.device)
    models = load_models(args, device, torch.float32)      # fp32 weights; mixed precision by --precision
    if device.type == "cuda" and models.text_encoder is not None:
        models.text_encoder.to(dtype=torch.bfloat16)      # umT5 only encodes the prompts (no gradient): bf16
    stack = load_face_stack(faces_folder(args), args.face_pack, "CUDA" if device.type == "cuda" else "CPU")
    return train_wan_identity(models, args.photos, args.name, args.class_word, stack, models_dir_of(args), settings,
                              rank=int(args.rank), prompts=read_prompts(args), overwrite=args.overwrite,
                              progress=progress, negative=args.training_negative)


def prompt_with_trigger(prompt: str, adapter) -> str:
    """The prompt with the adapter's identity named: ``{class_word}`` filled in; ``{token}`` kept where the adapter
    carries a token (the Wan Train node's token stage; :meth:`.wan_models.WanEngineModels.encode` puts the vector
    there) and dropped where it does not; a prompt with neither gets the trigger phrase in front unless it has it."""
    from .wan_train import class_word_prompt

    if adapter is None:
        return prompt
    class_word = adapter.info.training.get("class_word") or ""
    trigger = adapter.info.trigger or class_word
    if "{token}" in prompt or "{class_word}" in prompt:
        if adapter.embedding is not None:
            return prompt.replace("{class_word}", class_word or "person")
        return class_word_prompt(prompt, class_word or trigger)
    return prompt if not trigger or trigger in prompt else f"{trigger}, {prompt}"


def generate(args, adapter, progress=None) -> dict:
    """A video on Wan (``personalvideo generate --backbone wan``)."""
    import torch

    from .train_job import resolve_device
    from .wan_generate import WanGenerateSettings, generate_wan

    check_arguments(args, training=False)
    settings = WanGenerateSettings(
        prompt=prompt_with_trigger(args.prompt, adapter), negative=args.negative, frames=int(args.frames),
        width=int(args.width), height=int(args.height), steps=int(args.steps), cfg=float(args.cfg),
        seed=int(args.seed), strength=float(args.strength), end_percent=float(args.end_percent),
        **({} if args.start_percent is None else {"start_percent": float(args.start_percent)}))
    settings.check()
    device = resolve_device(args.device)
    dtype = torch.float32
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    models = load_models(args, device, dtype)
    return generate_wan(models, settings, adapter, progress)
