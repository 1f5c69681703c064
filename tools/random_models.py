"""Random-weight SD1.5-family model files that ComfyUI's own loaders accept (no downloads).

For proving the plumbing (the main job) and for tests: models are built from ComfyUI's
own classes with the real SD1.5 shapes and random weights, so the stock loaders detect
them as the real thing; what they generate is noise-like, never a real picture.

- :func:`tiny_sd15_model`: a ModelPatcher with an SD1.5-layout UNet (small, or full size).
- :func:`save_sd15_checkpoint`: UNet + CLIP-L + VAE at SD1.5 size, one fp16 .safetensors (~2 GB, ~20 s).
- :func:`save_animatelcm_motion_model`: an AnimateLCM-layout motion model (needs AnimateDiff-Evolved loaded).
- :func:`save_kohya_lora`: a LoRA in kohya/diffusers naming on chosen UNet Linears.
- :func:`save_random_lora`: a LoRA on every attention projection of the SD1.5 UNet (AnimateLCM or style LoRA stand-in).

Needs a ComfyUI host imported in-process (:func:`tools.comfy_host.bootstrap`).
"""
from __future__ import annotations

import os

import torch


def sd15_unet_config(model_channels=32, channel_mult=(1, 2), context_dim=32, full_size=False) -> dict:
    levels = len(channel_mult)
    if full_size:  # SD1.5: attention in the first three levels only
        model_channels, channel_mult, context_dim, levels = 320, (1, 2, 4, 4), 768, 4
        depth_in = [1, 1, 1, 1, 1, 1, 0, 0]
        depth_out = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    else:
        depth_in, depth_out = [1] * (2 * levels), [1] * (3 * levels)
    return {
        "image_size": 32, "in_channels": 4, "out_channels": 4,
        "model_channels": model_channels, "num_res_blocks": [2] * levels, "channel_mult": list(channel_mult),
        "transformer_depth": depth_in, "transformer_depth_output": depth_out, "transformer_depth_middle": 1,
        "context_dim": context_dim, "use_linear_in_transformer": False, "adm_in_channels": None,
        "use_temporal_attention": False, "use_temporal_resblock": False,
        "use_spatial_transformer": True, "legacy": False, "use_checkpoint": False,
        "num_heads": 8, "num_head_channels": -1,
    }


def initialise(module: torch.nn.Module, seed: int) -> None:
    """Give every layer defined random weights (ComfyUI builds layers without initialising them).

    Norms are set by type (weight 1, bias 0): zeroing the UNet's output norm by
    a name rule would make it output 0 whatever its input.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for m in module.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                if m.weight is not None:
                    torch.nn.init.ones_(m.weight)
                    torch.nn.init.zeros_(m.bias)
            elif isinstance(m, torch.nn.Embedding):
                torch.nn.init.normal_(m.weight, std=0.02)
            else:
                _torch_reset(m)
    finally:
        torch.random.set_rng_state(gen_state)


def _torch_reset(m: torch.nn.Module) -> None:
    """Call torch's own reset_parameters (ComfyUI's layer classes override it with a no-op)."""
    for cls in type(m).__mro__:
        if cls.__module__.startswith("torch.nn") and "reset_parameters" in cls.__dict__:
            cls.reset_parameters(m)
            return


def sd15_model_config(unet_config: dict):
    import comfy.supported_models

    class SmallSD15(comfy.supported_models.SD15):
        pass

    config = SmallSD15(dict(unet_config))
    config.unet_config.update({k: unet_config[k] for k in ("num_heads", "num_head_channels")})
    return config


def tiny_sd15_model(seed: int = 0, full_size: bool = False, device="cpu", model_channels: int = 32, dtype=None,
                    load_device="cpu"):
    """A ModelPatcher around a BaseModel with an SD1.5-layout UNet and random weights, built on ``device``.

    ``dtype`` (None: fp32) is given to the model config first, as ComfyUI's checkpoint loader does, so the UNet's
    ``dtype`` (what BaseModel casts the latents, the timestep embedding and the context to) matches its
    weights; a model built in fp32 and moved to fp16 afterwards still believes it is fp32, and its time_embed
    fails with "mat1 and mat2 must have the same dtype"."""
    import comfy.model_base
    import comfy.model_patcher

    config = sd15_model_config(sd15_unet_config(model_channels=model_channels, full_size=full_size))
    if dtype is not None:
        config.set_inference_dtype(dtype, None)
    base = comfy.model_base.BaseModel(config, device=device)
    initialise(base.diffusion_model, seed)
    base.eval()
    if dtype is not None and base.get_dtype() != dtype:
        raise RuntimeError(f"the UNet was built in {base.get_dtype()}, not in the {dtype} asked for")
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device(load_device),
                                            offload_device=torch.device("cpu"))


def save_kohya_lora(path: str, model, module_filter, rank: int = 4, seed: int = 5, std: float = 0.2,
                    dtype=None, metadata=None) -> list:
    """A random LoRA file in kohya/diffusers naming on the UNet Linears whose ldm path passes module_filter
    (up/down weights in ``dtype`` when given; written to a temporary file and renamed)."""
    import comfy.utils

    diffusers_to_ldm = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.model.diffusion_model.named_modules())
    tensors, chosen = {}, []
    for diffusers_key, ldm_key in sorted(diffusers_to_ldm.items()):
        if not diffusers_key.endswith(".weight"):
            continue
        ldm_path = ldm_key[: -len(".weight")]
        layer = modules.get(ldm_path)
        if not isinstance(layer, torch.nn.Linear) or not module_filter(ldm_path):
            continue
        key = "lora_unet_" + diffusers_key[: -len(".weight")].replace(".", "_")
        down = torch.randn(rank, layer.in_features, generator=g) * std
        up = torch.randn(layer.out_features, rank, generator=g) * std
        tensors[key + ".lora_down.weight"] = down if dtype is None else down.to(dtype)
        tensors[key + ".lora_up.weight"] = up if dtype is None else up.to(dtype)
        tensors[key + ".alpha"] = torch.tensor(float(rank))
        chosen.append(ldm_path)
    save_safetensors(tensors, path, metadata)
    return chosen


RANDOM_NOTE = {"note": "random weights for tests, not a real model"}


def save_safetensors(tensors: dict, path: str, metadata=None) -> None:
    """Write a .safetensors file whole or not at all (temporary file, then rename), creating its folder."""
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


VAE_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                    ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)


def _prefixed(prefix: str, module: torch.nn.Module) -> dict:
    return {prefix + k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}


@torch.no_grad()
def sd15_state_dict(seed: int = 0) -> dict:
    import comfy.ldm.modules.diffusionmodules.model as vae_parts
    import comfy.sd1_clip

    sd = {}
    unet = tiny_sd15_model(seed=seed, full_size=True).model.diffusion_model
    sd.update(_prefixed("model.diffusion_model.", unet))
    del unet
    clip = comfy.sd1_clip.SDClipModel(device="cpu")
    initialise(clip.transformer, seed + 1)
    sd.update(_prefixed("cond_stage_model.transformer.", clip.transformer))
    del clip
    vae = torch.nn.ModuleDict({
        "encoder": vae_parts.Encoder(**VAE_DDCONFIG), "decoder": vae_parts.Decoder(**VAE_DDCONFIG),
        "quant_conv": torch.nn.Conv2d(8, 8, 1), "post_quant_conv": torch.nn.Conv2d(4, 4, 1)})
    initialise(vae, seed + 2)
    sd.update(_prefixed("first_stage_model.", vae))
    return {k: v for k, v in sd.items() if not k.endswith("position_ids")}


def save_sd15_checkpoint(path: str, seed: int = 0) -> str:
    if not os.path.exists(path):
        save_safetensors(sd15_state_dict(seed), path, RANDOM_NOTE)
    return path


def animatelcm_layout(file_name: str):
    """AnimateDiff-Evolved's motion-module module, and the (state dict, info) its loader makes of a file named
    ``file_name`` that names the AnimateLCM layout's keys (SD1.5 widths; empty tensors: build the model from
    them, on the meta device or to initialise). Needs AnimateDiff-Evolved importable in the host."""
    import importlib

    ad = importlib.import_module(_ade_module_name() + ".animatediff.motion_module_ad")
    names = {}
    for kind, blocks, modules in (("down_blocks", 4, 2), ("up_blocks", 4, 3)):
        for b in range(blocks):
            for m in range(modules):
                for a in range(2):
                    key = (f"{kind}.{b}.motion_modules.{m}.temporal_transformer.transformer_blocks.0."
                           f"attention_blocks.{a}.to_q.weight")
                    names[key] = torch.empty(0)
    sd, info = ad.normalize_ad_state_dict(names, file_name)
    return ad, sd, info


def save_animatelcm_motion_model(path: str, seed: int = 11) -> str:
    """A motion model in the AnimateLCM file layout (SD1.5 widths), random weights.

    Built with AnimateDiff-Evolved's own classes from a dict naming the layout's
    keys; saved without ``pos_encoder`` entries, which is how its loader tells
    AnimateLCM apart. Needs AnimateDiff-Evolved importable in the host.
    """
    if os.path.exists(path):
        return path
    ad, sd, info = animatelcm_layout(os.path.basename(path))
    with torch.no_grad():
        model = ad.AnimateDiffModel(sd, info)
        initialise(model, seed)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
                 if "pos_encoder" not in k}
    save_safetensors(state, path)
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
    fp16 weights: stands in for AnimateLCM_sd15_t2v_lora.safetensors or a style LoRA. Names come from
    ComfyUI's own UNet key map, so its LoRA loaders load every key. An existing file is kept."""
    if not os.path.exists(path):
        layout = tiny_sd15_model(full_size=True, device="meta")
        save_kohya_lora(path, layout, lambda ldm_path: ".attn" in ldm_path, rank=rank, seed=seed, std=std,
                        dtype=torch.float16, metadata=RANDOM_NOTE)
    return path
