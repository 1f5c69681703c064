"""Random-weight Wan diffusion models that ComfyUI core's own loader detects (no downloads).

The weights are laid out as a Wan 2.1 / 2.2 file holds them (``blocks.N.self_attn.q.weight`` ...), built from
core's ``comfy.ldm.wan.model.WanModel`` and handed to ``comfy.sd.load_diffusion_model_state_dict``, which reads
the size (width, layers, heads = width / 128, FFN width, in/out channels) from the tensors, as it does for a
downloaded file.  What they generate is noise, never a picture.

- :data:`WAN_SIZES`: the real sizes (1.3B, 14B, TI2V 5B) and a tiny one for tests.
- :func:`wan_state_dict` / :func:`save_wan_model`: a state dict / a ``.safetensors`` file of a given size.
- :func:`tiny_wan_model`: a loaded ModelPatcher (core's WAN21 / WAN22 model) of a given size.
- :func:`wan_model_in_place`: the same model built from core's config for a size, weights initialised in place
  (no second copy of the weights: for runs at 1.3B size and up).

Needs a ComfyUI host with Wan (ComfyUI 0.3.3x or newer) imported in-process.
"""
from __future__ import annotations

import math

import torch

from .random_models import RANDOM_NOTE, save_safetensors

# dim, ffn_dim, layers, in/out channels: what core reads from the weights (heads = dim // 128)
WAN_SIZES = {
    "tiny": dict(dim=256, ffn_dim=512, num_layers=2, in_dim=16, out_dim=16),
    "tiny_ti2v": dict(dim=256, ffn_dim=512, num_layers=2, in_dim=48, out_dim=48),
    "1.3B": dict(dim=1536, ffn_dim=8960, num_layers=30, in_dim=16, out_dim=16),
    "14B": dict(dim=5120, ffn_dim=13824, num_layers=40, in_dim=16, out_dim=16),
    "ti2v_5B": dict(dim=3072, ffn_dim=14336, num_layers=30, in_dim=48, out_dim=48),
}
TEXT_DIM = 4096   # umT5-XXL's width: the text embedding's input


def has_wan() -> bool:
    """Whether the imported ComfyUI host has core Wan (the March 2024 tree has not)."""
    try:
        import comfy.ldm.wan.model  # noqa: F401
    except ImportError:
        return False
    return True


def _initialise(model: torch.nn.Module, seed: int) -> None:
    """Defined random weights for every parameter (core builds layers without initialising them): norms 1,
    biases small, modulations small, weights uniform in +-1/sqrt(fan_in)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name and leaf == "weight":
                p.copy_(torch.ones_like(p))
            elif leaf == "bias":
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif "modulation" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                fan_in = math.prod(p.shape[1:]) if p.ndim > 1 else p.shape[0]
                bound = 1.0 / math.sqrt(max(fan_in, 1))
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)


def wan_state_dict(size: str = "tiny", seed: int = 0, dtype=torch.float32, device="cpu") -> dict:
    """The weights of a random Wan T2V diffusion model of ``size`` (a :data:`WAN_SIZES` key), file layout."""
    import comfy.ldm.wan.model
    import comfy.ops

    config = WAN_SIZES[size]
    model = comfy.ldm.wan.model.WanModel(
        model_type="t2v", num_heads=config["dim"] // 128, text_dim=TEXT_DIM, device=device,
        operations=comfy.ops.disable_weight_init, **config)
    _initialise(model, seed)
    return {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}


def tiny_wan_model(size: str = "tiny", seed: int = 0):
    """A ModelPatcher of core's Wan model, loaded from a random state dict by core's own detection."""
    import comfy.sd

    model = comfy.sd.load_diffusion_model_state_dict(wan_state_dict(size, seed))
    if model is None:
        raise RuntimeError("this ComfyUI host did not recognise the Wan weights")
    return model


def wan_model_in_place(size: str = "1.3B", seed: int = 0, device="cpu"):
    """A ModelPatcher of core's Wan model of ``size``, built from the unet config core's detection would read
    from such weights (core's own model class and config), its weights initialised in place."""
    import comfy.model_detection
    import comfy.model_patcher

    config = WAN_SIZES[size]
    unet_config = dict(image_model="wan2.1", model_type="t2v", num_heads=config["dim"] // 128, patch_size=(1, 2, 2),
                       freq_dim=256, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6, **config)
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config)
    if model_config is None:
        raise RuntimeError("this ComfyUI host has no Wan model config")
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, "", device=device)
    _initialise(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device(device),
                                            offload_device=torch.device(device))


def save_wan_model(path: str, size: str = "tiny", seed: int = 0, dtype=torch.float16) -> str:
    """A random Wan diffusion model file (``models/diffusion_models``), written to a temporary file and renamed."""
    save_safetensors(wan_state_dict(size, seed, dtype), path, RANDOM_NOTE)
    return path


def random_text_cond(seed: int, tokens: int = 8):
    """A CONDITIONING as umT5 gives Wan (width 4096), random."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, TEXT_DIM, generator=g), {}]]


def empty_wan_latent(frames: int = 5, width: int = 64, height: int = 64, channels: int = 16, batch: int = 1):
    """A LATENT of zeros as core's EmptyHunyuanLatentVideo makes it for Wan 2.1 (4x time, 8x space)."""
    return {"samples": torch.zeros(batch, channels, (frames - 1) // 4 + 1, height // 8, width // 8)}


# the Wan 2.1 VAE's config: core builds it from this fixed config whatever the file holds (comfy/sd.py)
WAN21_VAE_CONFIG = dict(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                        temperal_downsample=[False, True, True], dropout=0.0)


def wan21_vae_state_dict(seed: int = 0, dtype=torch.float16) -> dict:
    """The weights of a random Wan 2.1 VAE at its real size (about 127M parameters; core has no smaller one), built
    from core's ``comfy.ldm.wan.vae.WanVAE``: norms' gamma 1, biases 0, weights uniform in +-1/sqrt(fan_in)."""
    import comfy.ldm.wan.vae

    vae = comfy.ldm.wan.vae.WanVAE(**WAN21_VAE_CONFIG)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "gamma":
                p.copy_(torch.ones_like(p))
            elif leaf == "bias":
                p.zero_()
            else:
                bound = 1.0 / math.sqrt(max(math.prod(p.shape[1:]) if p.ndim > 1 else 1, 1))
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return {k: v.detach().to(dtype).contiguous() for k, v in vae.state_dict().items()}


def save_wan21_vae(path: str, seed: int = 0) -> str:
    """A random Wan 2.1 VAE file (``models/vae``), written to a temporary file and renamed."""
    save_safetensors(wan21_vae_state_dict(seed), path, RANDOM_NOTE)
    return path


def save_wan_style_lora(path: str, size: str = "tiny", rank: int = 4, seed: int = 0, std: float = 0.05) -> str:
    """A random LoRA in musubi-tuner / kohya layout (``lora_unet_blocks_N_<module>``) on every linear layer of every
    block of a Wan model of ``size``, self- and cross-attention and FFN, as a style LoRA adapts them; core's
    LoraLoaderModelOnly maps these keys onto its Wan model."""
    config = WAN_SIZES[size]
    dim, ffn = config["dim"], config["ffn_dim"]
    shapes = {f"{attn}_{p}": (dim, dim) for attn in ("self_attn", "cross_attn") for p in "qkvo"}
    shapes.update(ffn_0=(ffn, dim), ffn_2=(dim, ffn))
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for block in range(config["num_layers"]):
        for module, (out_features, in_features) in shapes.items():
            key = f"lora_unet_blocks_{block}_{module}"
            sd[f"{key}.lora_down.weight"] = torch.randn(rank, in_features, generator=g) / math.sqrt(in_features)
            sd[f"{key}.lora_up.weight"] = torch.randn(out_features, rank, generator=g) * std
            sd[f"{key}.alpha"] = torch.tensor(float(rank))
    save_safetensors({k: v.to(torch.float16).contiguous() for k, v in sd.items()}, path,
                     {"note": "random weights for tests, not a real LoRA"})
    return path
