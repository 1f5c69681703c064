"""The models of the method as diffusers classes, from the files ComfyUI users have or diffusers folders.

- An SD1.5 single-file checkpoint (``.safetensors``; ``.ckpt`` read with
  ``weights_only=True``, never unpickled): UNet, VAE and CLIP-L text model, with
  configs from :mod:`.shipped_configs` adjusted to the file's shapes.
- An AnimateDiff / AnimateLCM motion-module file, or a diffusers MotionAdapter folder.
- A diffusers pipeline folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``), local only.
- The tokenizer: a folder given, the one of a diffusers folder, or ComfyUI's own copy
  (``<ComfyUI>/comfy/sd1_tokenizer``) when a ComfyUI root is given.

Nothing is ever downloaded: every ``from_pretrained`` runs with ``local_files_only``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from ..sia.atomic_file import atomic_write
from . import checkpoint_keys as keys
from .errors import EngineError
from .shipped_configs import shipped_config

# ComfyUI model folder names per kind of file (models/<folder>/), in the order looked in
COMFYUI_FOLDERS = {
    "checkpoints": ("checkpoints",),
    "motion": ("animatediff_models", os.path.join("..", "custom_nodes", "ComfyUI-AnimateDiff-Evolved", "models")),
    "sia": ("sia",),
    "embeddings": ("embeddings",),
    "insightface": ("insightface",),
}


@dataclass
class EngineModels:
    unet: torch.nn.Module                 # UNet2DConditionModel, or UNetMotionModel once motion modules are in
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict = field(default_factory=lambda: shipped_config("sd15_scheduler"))
    res_blocks: int = 2
    source: str = "(in memory)"

    @property
    def has_motion(self) -> bool:
        return type(self.unet).__name__ == "UNetMotionModel"

    def predict_noise(self, latents: torch.Tensor, t, context: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction (fp32); ``latents`` [B, C, F, h, w] with motion modules (the text
        embeddings [B, 77, D] then repeated per frame, as diffusers' AnimateDiff pipeline does), else [B, C, h, w]
        (one text embedding serves the whole batch)."""
        if self.has_motion:
            context = context.repeat_interleave(latents.shape[2], dim=0)
        elif context.shape[0] == 1:
            context = context.expand(latents.shape[0], -1, -1)
        dtype = next(self.unet.parameters()).dtype
        return self.unet(latents.to(dtype), t, encoder_hidden_states=context.to(latents.device, dtype)).sample.float()

    def to(self, device, dtype=None):
        for module in (self.unet, self.vae, self.text_encoder):
            module.to(device=device, dtype=dtype)
        return self

    def freeze(self):
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
            module.eval()
        return self


def read_state_dict(path: str, what: str) -> dict:
    """Tensors of a .safetensors (or, weights only, .ckpt/.pt) file; a clear error for anything else."""
    if not os.path.isfile(path):
        raise EngineError(f"{what} file not found: {path}")
    try:
        if path.lower().endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        if path.lower().endswith((".ckpt", ".pt", ".pth", ".bin")):
            sd = torch.load(path, map_location="cpu", weights_only=True)
            return sd.get("state_dict", sd) if isinstance(sd, dict) else {}
    except Exception as exc:  # noqa: BLE001  (damaged or foreign files raise many types)
        raise EngineError(f"{path} is not a readable {what} file ({type(exc).__name__}: {exc}). It may be "
                          "truncated by an interrupted download or copy: get it again.") from None
    raise EngineError(f"{path}: the {what} must be a .safetensors (or .ckpt) file.")


def find_tokenizer(tokenizer: str | None = None, comfyui_root: str | None = None) -> str:
    """The folder of SD1.5's CLIP tokenizer (vocab.json + merges.txt)."""
    candidates = [tokenizer] if tokenizer else []
    if comfyui_root:
        candidates.append(os.path.join(comfyui_root, "comfy", "sd1_tokenizer"))
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "vocab.json")) and os.path.isfile(os.path.join(folder, "merges.txt")):
            return folder
    raise EngineError("no CLIP tokenizer found (a folder with vocab.json and merges.txt; looked in: "
                      f"{', '.join(candidates) or 'nowhere'}). Give --comfyui-root (ComfyUI ships one in "
                      "comfy/sd1_tokenizer) or --tokenizer FOLDER; nothing is downloaded.")


def load_tokenizer(folder: str):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def _load_strict(module: torch.nn.Module, sd: dict, what: str, path: str, allow_missing=()) -> None:
    missing, unexpected = module.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith(tuple(allow_missing))]
    if missing or unexpected:
        raise EngineError(f"{path}: the {what} does not have the SD1.5 layout ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected weights, e.g. {(missing + unexpected)[:3]}).")


def unet_from_ldm(sd: dict, path: str = "(in memory)"):
    """UNet2DConditionModel from ldm UNet keys (no prefix); returns (unet, residual blocks per level)."""
    from diffusers import UNet2DConditionModel

    layout = keys.unet_layout(sd)
    unet = UNet2DConditionModel.from_config(keys.unet_config(layout, shipped_config("sd15_unet")))
    _load_strict(unet, keys.unet_to_diffusers(sd, layout), "UNet", path)
    return unet, layout["res_blocks"]


def vae_from_ldm(sd: dict, path: str = "(in memory)"):
    from diffusers import AutoencoderKL

    layout = keys.vae_layout(sd)
    vae = AutoencoderKL.from_config(keys.vae_config(layout, shipped_config("sd15_vae")))
    _load_strict(vae, keys.vae_to_diffusers(sd, layout), "VAE", path)
    return vae


def text_encoder_from_ldm(sd: dict, path: str = "(in memory)"):
    from transformers import CLIPTextConfig, CLIPTextModel

    sd = keys.clip_to_transformers(sd)
    model = CLIPTextModel(CLIPTextConfig(**keys.clip_config(sd, shipped_config("clip_l"))))
    if not any(k.startswith("text_model.") for k in model.state_dict()):  # transformers 5 names them without it
        sd = {k[len("text_model."):]: v for k, v in sd.items()}
    _load_strict(model, sd, "text encoder", path, allow_missing=("position_ids",))
    return model


def load_checkpoint(path: str, tokenizer_folder: str, dtype=torch.float32) -> EngineModels:
    """An SD1.5 single-file checkpoint as diffusers models (on the CPU, ``dtype``)."""
    sd = read_state_dict(path, "checkpoint")
    unet, res_blocks = unet_from_ldm(keys.split(sd, keys.UNET_PREFIX), path)
    vae = vae_from_ldm(keys.split(sd, keys.VAE_PREFIX), path)
    text = text_encoder_from_ldm(keys.split(sd, keys.CLIP_PREFIX), path)
    del sd
    models = EngineModels(unet, vae, text, load_tokenizer(tokenizer_folder), res_blocks=res_blocks, source=path)
    return models.to("cpu", dtype).freeze()


def load_diffusers_folder(folder: str, dtype=torch.float32) -> EngineModels:
    """A local diffusers SD1.5 pipeline folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    for part in ("unet", "vae", "text_encoder", "tokenizer"):
        if not os.path.isdir(os.path.join(folder, part)):
            raise EngineError(f"{folder} is not a diffusers pipeline folder (no {part}/ in it).")
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
    text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", local_files_only=True)
    blocks = int(unet.config.layers_per_block)
    models = EngineModels(unet, vae, text, load_tokenizer(os.path.join(folder, "tokenizer")), res_blocks=blocks,
                          source=folder)
    return models.to("cpu", dtype).freeze()


def load_models(checkpoint: str, tokenizer: str | None = None, comfyui_root: str | None = None,
                dtype=torch.float32) -> EngineModels:
    """A checkpoint file or diffusers folder by path, or a checkpoint name in ComfyUI's models/checkpoints."""
    path = resolve_model_path(checkpoint, "checkpoints", comfyui_root, "checkpoint")
    if os.path.isdir(path):
        return load_diffusers_folder(path, dtype)
    return load_checkpoint(path, find_tokenizer(tokenizer, comfyui_root), dtype)


def motion_adapter_from_file(path: str):
    """A diffusers MotionAdapter from an AnimateDiff / AnimateLCM motion-module file or a diffusers folder."""
    from diffusers import MotionAdapter

    if os.path.isdir(path):
        return MotionAdapter.from_pretrained(path, local_files_only=True)
    raw = read_state_dict(path, "motion model")
    sd = keys.motion_to_diffusers(raw)
    adapter = MotionAdapter.from_config(keys.motion_layout(sd, shipped_config("animatelcm_motion"),
                                                           keys.motion_positions(raw)))
    _load_strict(adapter, sd, "motion model", path, allow_missing=(".pe",))
    return adapter


def save_motion_module(adapter, path: str) -> str:
    """Write a MotionAdapter in the AnimateDiff file layout (ComfyUI's motion-model loaders read it),
    whole or not at all."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in keys.motion_from_diffusers(adapter.state_dict()).items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp))


def add_motion(models: EngineModels, motion_adapter) -> EngineModels:
    """Put the motion modules into the UNet (a UNetMotionModel sharing nothing with the image UNet), on the image
    UNet's device and in its dtype."""
    from diffusers import UNetMotionModel

    if models.has_motion:
        return models
    widths = list(models.unet.config.block_out_channels)
    if list(motion_adapter.config.block_out_channels) != widths:
        raise EngineError(f"the motion model is for UNet widths {list(motion_adapter.config.block_out_channels)} "
                          f"but the checkpoint's UNet has {widths}: use an SD1.5 motion model with an SD1.5 "
                          "checkpoint.")
    weight = next(models.unet.parameters())
    with torch.device(weight.device):   # diffusers builds it on torch's default device (the CPU beside a GPU UNet)
        unet = UNetMotionModel.from_unet2d(models.unet, motion_adapter).to(weight.dtype)
    unet.requires_grad_(False)
    unet.eval()
    models.unet = unet
    return models


def resolve_model_path(name: str, kind: str, comfyui_root: str | None, what: str) -> str:
    """``name`` as a path, or as a file name in the ComfyUI root's model folders for ``kind``."""
    if name and os.path.exists(name):
        return os.path.abspath(name)
    looked = [name]
    if comfyui_root and name:
        for folder in COMFYUI_FOLDERS[kind]:
            for candidate in (name, name + ".safetensors"):
                path = os.path.normpath(os.path.join(comfyui_root, "models", folder, candidate))
                looked.append(path)
                if os.path.exists(path):
                    return path
    raise EngineError(f"{what} {name!r} not found (looked at: {', '.join(looked)}). Give a path, or a file name "
                      "in your ComfyUI models folder with --comfyui-root.")
