"""Small models with the real SD1.5 architectures, built from ComfyUI's own classes.

No weights can be downloaded here, so every test model is built with random
weights: the UNet with the SD1.5 layout (spatial transformers at each level,
two residual blocks per level, a middle block) at a small width, wrapped in
ComfyUI's BaseModel/ModelPatcher exactly as a loaded checkpoint would be.
"""
from __future__ import annotations

import torch

import host  # noqa: F401  (makes tools/ importable as pv_tools)
from pv_tools.random_models import (initialise, save_kohya_lora, sd15_model_config,  # noqa: F401
                                    sd15_unet_config, tiny_sd15_model)


def context_dim(model) -> int:
    return model.model.model_config.unet_config["context_dim"]


def random_cond(model, seed: int, tokens: int = 77):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, context_dim(model), generator=g), {}]]


def save_tiny_controlnet(path: str, seed: int = 3, model_channels: int = 64, channel_mult=(1, 2)) -> str:
    """A ControlNet with the SD1.5 ControlNet layout for a small UNet, random weights, ldm keys.

    ComfyUI's loader gives an undetected ControlNet 64-channel heads, so the
    UNet it goes with must be at least 64 channels wide.
    """
    import comfy.cldm.cldm
    from safetensors.torch import save_file

    config = sd15_unet_config(model_channels=model_channels, channel_mult=channel_mult)
    for key in ("out_channels", "transformer_depth_output"):
        config.pop(key)
    net = comfy.cldm.cldm.ControlNet(hint_channels=3, device="cpu", **config)
    initialise(net, seed)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return path


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
