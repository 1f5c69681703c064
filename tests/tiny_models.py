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


def tiny_sd15_model(seed: int = 0, full_size: bool = False, device="cpu"):
    """A ModelPatcher around a BaseModel with an SD1.5-layout UNet and random weights."""
    import comfy.model_base
    import comfy.model_patcher

    config = sd15_model_config(sd15_unet_config(full_size=full_size))
    base = comfy.model_base.BaseModel(config, device=device)
    initialise(base.diffusion_model, seed)
    base.eval()
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def context_dim(model) -> int:
    return model.model.model_config.unet_config["context_dim"]


def random_cond(model, seed: int, tokens: int = 77):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, context_dim(model), generator=g), {}]]
