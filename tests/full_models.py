"""SD1.5-size random-weight model files that ComfyUI's own loaders accept.

For what only full-size architectures can show (a checkpoint the stock
CheckpointLoaderSimple detects as SD1.5, AnimateDiff motion models, timings):
UNet, CLIP-L text encoder and VAE built from ComfyUI's classes with the SD1.5
shapes, random weights (no downloads), saved as one fp16 .safetensors with the
usual ldm key prefixes.  Building and saving takes ~20 s and ~2 GB of disk.
"""
from __future__ import annotations

import os

import torch

import tiny_models
from tiny_models import initialise

VAE_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                    ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)


def _prefixed(prefix: str, module: torch.nn.Module) -> dict:
    return {prefix + k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}


@torch.no_grad()
def sd15_state_dict(seed: int = 0) -> dict:
    import comfy.ldm.modules.diffusionmodules.model as vae_parts
    import comfy.sd1_clip

    sd = {}
    unet = tiny_models.tiny_sd15_model(seed=seed, full_size=True).model.diffusion_model
    sd.update(_prefixed("model.diffusion_model.", unet))
    del unet
    clip = comfy.sd1_clip.SDClipModel(device="cpu")
    tiny_models.initialise(clip.transformer, seed + 1)
    sd.update(_prefixed("cond_stage_model.transformer.", clip.transformer))
    del clip
    vae = torch.nn.ModuleDict({
        "encoder": vae_parts.Encoder(**VAE_DDCONFIG), "decoder": vae_parts.Decoder(**VAE_DDCONFIG),
        "quant_conv": torch.nn.Conv2d(8, 8, 1), "post_quant_conv": torch.nn.Conv2d(4, 4, 1)})
    tiny_models.initialise(vae, seed + 2)
    sd.update(_prefixed("first_stage_model.", vae))
    return {k: v for k, v in sd.items() if not k.endswith("position_ids")}


def save_sd15_checkpoint(path: str, seed: int = 0) -> str:
    from safetensors.torch import save_file

    if not os.path.exists(path):
        tmp = path + ".tmp"
        save_file(sd15_state_dict(seed), tmp, metadata={"note": "random weights for tests, not a real model"})
        os.replace(tmp, path)
    return path


def save_animatelcm_motion_model(path: str, seed: int = 11) -> str:
    """A motion model in the AnimateLCM file layout (SD1.5 widths), random weights.

    Built with AnimateDiff-Evolved's own classes from a dict naming the layout's
    keys; saved without ``pos_encoder`` entries, which is how its loader tells
    AnimateLCM apart. Needs AnimateDiff-Evolved importable in the host.
    """
    import importlib

    from safetensors.torch import save_file

    ad = importlib.import_module(_ade_module_name() + ".animatediff.motion_module_ad")
    if os.path.exists(path):
        return path
    names = {}
    for kind, blocks, modules in (("down_blocks", 4, 2), ("up_blocks", 4, 3)):
        for b in range(blocks):
            for m in range(modules):
                for a in range(2):
                    key = (f"{kind}.{b}.motion_modules.{m}.temporal_transformer.transformer_blocks.0."
                           f"attention_blocks.{a}.to_q.weight")
                    names[key] = torch.empty(0)
    sd, info = ad.normalize_ad_state_dict(names, os.path.basename(path))
    with torch.no_grad():
        model = ad.AnimateDiffModel(sd, info)
        initialise(model, seed)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
                 if "pos_encoder" not in k}
    tmp = path + ".tmp"
    save_file(state, tmp)
    os.replace(tmp, path)
    return path


def _ade_module_name() -> str:
    import sys

    for name, module in list(sys.modules.items()):
        if name.endswith(("ComfyUI-AnimateDiff-Evolved", "comfyui-animatediff-evolved")) and hasattr(module, "__path__"):
            return name
    raise ModuleNotFoundError("AnimateDiff-Evolved is not loaded in this host")


def has_animatediff_evolved() -> bool:
    import nodes

    return "ADE_AnimateDiffLoaderGen1" in nodes.NODE_CLASS_MAPPINGS


def save_random_lora(path: str, rank: int = 4, seed: int = 3, std: float = 0.01) -> str:
    """A kohya-format LoRA (diffusers layer names) on every attention projection of the SD1.5 UNet, random
    weights: stands in for AnimateLCM_sd15_t2v_lora.safetensors or a style LoRA. ComfyUI's own key map
    decides the names, so its LoRA loaders load every key."""
    import comfy.lora
    from safetensors.torch import save_file

    if os.path.exists(path):
        return path
    model = tiny_models.tiny_sd15_model(full_size=True, device="meta").model
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, key in sorted(comfy.lora.model_lora_keys_unet(model, {}).items()):
        if not isinstance(key, str) or "_attentions_" not in name or "_attn" not in name or len(shapes[key]) != 2:
            continue
        out_f, in_f = shapes[key]
        tensors[f"{name}.lora_down.weight"] = (torch.randn(rank, in_f, generator=g) * std).half()
        tensors[f"{name}.lora_up.weight"] = (torch.randn(out_f, rank, generator=g) * std).half()
        tensors[f"{name}.alpha"] = torch.tensor(float(rank))
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata={"note": "random weights for tests, not a real model"})
    os.replace(tmp, path)
    return path
