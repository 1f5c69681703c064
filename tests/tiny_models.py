"""Small models with the real SD1.5 architectures, built from ComfyUI's own classes.

No weights can be downloaded here, so every test model is built with random
weights: the UNet with the SD1.5 layout (spatial transformers at each level,
two residual blocks per level, a middle block) at a small width, wrapped in
ComfyUI's BaseModel/ModelPatcher exactly as a loaded checkpoint would be.
"""
from __future__ import annotations

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


def tiny_sd15_model(seed: int = 0, full_size: bool = False, device="cpu", model_channels: int = 32):
    """A ModelPatcher around a BaseModel with an SD1.5-layout UNet and random weights."""
    import comfy.model_base
    import comfy.model_patcher

    config = sd15_model_config(sd15_unet_config(model_channels=model_channels, full_size=full_size))
    base = comfy.model_base.BaseModel(config, device=device)
    initialise(base.diffusion_model, seed)
    base.eval()
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def context_dim(model) -> int:
    return model.model.model_config.unet_config["context_dim"]


def random_cond(model, seed: int, tokens: int = 77):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, context_dim(model), generator=g), {}]]


def save_tiny_controlnet(path: str, seed: int = 3, model_channels: int = 64) -> str:
    """A ControlNet with the SD1.5 ControlNet layout for a small UNet, random weights, ldm keys.

    ComfyUI's loader gives an undetected ControlNet 64-channel heads, so the
    UNet it goes with must be at least 64 channels wide.
    """
    import comfy.cldm.cldm
    from safetensors.torch import save_file

    config = sd15_unet_config(model_channels=model_channels)
    for key in ("out_channels", "transformer_depth_output"):
        config.pop(key)
    net = comfy.cldm.cldm.ControlNet(hint_channels=3, device="cpu", **config)
    initialise(net, seed)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return path


def save_kohya_lora(path: str, model, module_filter, rank: int = 4, seed: int = 5, std: float = 0.2) -> list:
    """A random LoRA file in kohya/diffusers naming on the UNet Linears whose ldm path passes module_filter."""
    import comfy.utils
    from safetensors.torch import save_file

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
        tensors[key + ".lora_down.weight"] = torch.randn(rank, layer.in_features, generator=g) * std
        tensors[key + ".lora_up.weight"] = torch.randn(layer.out_features, rank, generator=g) * std
        tensors[key + ".alpha"] = torch.tensor(float(rank))
        chosen.append(ldm_path)
    save_file(tensors, path)
    return chosen


# ---- a tiny VAE and a tiny CLIP text encoder (ComfyUI's own classes), for the trainer tests ----

TINY_VAE_DDCONFIG = dict(double_z=True, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32,
                         ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0)


def tiny_vae(seed: int = 7):
    """A comfy.sd.VAE around an AutoencoderKL with the SD layout (8x downscale, 4 latent channels), narrow."""
    import comfy.ldm.models.autoencoder
    import comfy.sd

    config = {"params": {"ddconfig": dict(TINY_VAE_DDCONFIG), "embed_dim": 4}}
    with torch.no_grad():
        ae = comfy.ldm.models.autoencoder.AutoencoderKL(**config["params"])
        initialise(ae, seed)
        sd = {k: v.detach().clone() for k, v in ae.state_dict().items()}
    return comfy.sd.VAE(sd=sd, config=config)


def _tiny_clip_config_file(hidden: int) -> str:
    import json
    import os
    import tempfile

    path = os.path.join(tempfile.gettempdir(), f"pv-tiny-clip-{hidden}.json")
    config = {"hidden_act": "quick_gelu", "hidden_size": hidden, "intermediate_size": hidden * 2,
              "layer_norm_eps": 1e-5, "max_position_embeddings": 77, "num_attention_heads": 2,
              "num_hidden_layers": 2, "projection_dim": hidden, "vocab_size": 49408,
              "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    tmp = path + f".{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(config, f)
    os.replace(tmp, path)
    return path


def tiny_clip(hidden: int = 32, seed: int = 8, embedding_directory=None):
    """A comfy.sd.CLIP with SD1.5's tokenizer and a 2-layer CLIP text model of width ``hidden``.

    ``embedding_directory`` defaults to ComfyUI's embeddings folders, so
    ``embedding:<name>`` in a prompt loads files from there, like a loaded checkpoint's CLIP.
    """
    import inspect
    from types import SimpleNamespace

    import comfy.sd
    import comfy.sd1_clip
    import folder_paths

    config_file = _tiny_clip_config_file(hidden)
    model_kwargs = inspect.signature(comfy.sd1_clip.SDClipModel.__init__).parameters
    tok_kwargs = inspect.signature(comfy.sd1_clip.SDTokenizer.__init__).parameters

    class TinyTextModel(comfy.sd1_clip.SDClipModel):
        def __init__(self, device="cpu", dtype=None, model_options=None, **kwargs):
            extra = {"model_options": model_options or {}} if "model_options" in model_kwargs else {}
            super().__init__(device=device, dtype=dtype, textmodel_json_config=config_file,
                             return_projected_pooled=False, **extra)

    class TinyClipModel(comfy.sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, **kwargs):
            super().__init__(device=device, dtype=dtype, clip_model=TinyTextModel, **kwargs)

    class TinyTokenizer(comfy.sd1_clip.SDTokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data=None, **kwargs):
            extra = {"tokenizer_data": tokenizer_data or {}} if "tokenizer_data" in tok_kwargs else {}
            super().__init__(embedding_directory=embedding_directory, embedding_size=hidden, **extra)

    class TinyTokenizerSet(comfy.sd1_clip.SD1Tokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data=None, **kwargs):
            extra = {"tokenizer_data": tokenizer_data or {}} if tokenizer_data is not None else {}
            super().__init__(embedding_directory=embedding_directory, tokenizer=TinyTokenizer, **extra)

    if embedding_directory is None:
        embedding_directory = folder_paths.get_folder_paths("embeddings")
    target = SimpleNamespace(params={}, clip=TinyClipModel, tokenizer=TinyTokenizerSet)
    with torch.no_grad():
        clip = comfy.sd.CLIP(target, embedding_directory=embedding_directory)
        initialise(clip.cond_stage_model, seed)
    return clip
