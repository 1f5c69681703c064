"""Peak memory of the Wan adapter stage's gradient step, counted on the meta device (no memory, no GPU).

The stage-2 estimate of ``bench_train.py --estimate`` carried over to core Wan: core's own ``WanModel`` and
``WanVAE`` are built on the meta device in the dtype asked for, a rank-``r`` adapter goes on every block's
``self_attn`` q/k/v (the pack's own forward and LoRA math, gate open), and one gradient step runs as the Wan
trainer (``training/wan_trainer.py``) runs it: the diffusion model over the video latent, cond and uncond
batched (cfg > 1), with gradient, under the trainer's gradient checkpointing of the Wan blocks (and of the VAE
decoder's middle and up-sampling layers) when asked;
the flow-matching denoised latent ``x - sigma * v``; the first latent frame alone decoded with gradient by the
Wan VAE's decoder (the trainer's decode); a loss on its pixels; backward. A dispatch-mode tracker
(``tests/autograd_memory.py`` ``AllocationPeak``) counts the bytes of every tensor the step creates that are
alive at once; the weights, there before, are not counted (:func:`weight_bytes` gives them).

Attention runs as a GPU's fused kernels run it (PyTorch's flash kernel, no attention matrix kept), in the Wan
blocks and in the VAE's one attention block alike; the same operation runs on the CPU, so the same step at
small size can run for real there and be compared (:func:`step_peak` on ``cpu`` and on ``meta``).

:func:`token_step_peak` does the same for the token stage (``training/wan_token.py``): one prompt through
umT5-XXL with gradient to its input (the learned vector enters umT5's input sequence, so umT5's activations are
kept for backward; with fp8 weights core casts each layer to the compute dtype as it runs, and backward keeps
every cast copy as well), the Wan model over the batch of single-frame photo latents, the flow-matching loss,
backward.

Not modelled: the identity loss's face detector and encoder activations (a few MB at 112 px), allocator
rounding and caching, CUDA's workspace.
"""
from __future__ import annotations

import contextlib

import torch

from bench_train import _fused_vae_attention, attach_adapter, fused_attention

UMT5_TOKENS = 512   # core's umT5 tokenizer pads every prompt to at least 512 tokens
FLOW_SIGMA = 0.25   # the last step's noise level (any level: the memory does not depend on it)


@contextlib.contextmanager
def fused_attention_in_wan():
    """Within the block core Wan's blocks use :func:`bench_train.fused_attention` (core binds its attention
    function into the Wan module when it is imported)."""
    import comfy.ldm.wan.model as wan_model

    before = wan_model.optimized_attention
    wan_model.optimized_attention = fused_attention
    try:
        yield
    finally:
        wan_model.optimized_attention = before


def wan_parts(size: str, device, dtype, rank: int = 4, seed: int = 0, operations=None, vae_dtype=None):
    """(diffusion model, Wan 2.1 VAE, adapter weights) of core's classes at ``size`` (a ``WAN_SIZES`` key) on
    ``device`` in ``dtype``; on a real device the weights are random (seeded), on meta they take no memory.
    ``operations``: core's layer family (default ``comfy.ops.disable_weight_init``, as core loads weights in
    the compute dtype; ``comfy.ops.manual_cast`` for weights stored narrower, fp8, cast per layer);
    ``vae_dtype``: the VAE's (default ``dtype``)."""
    import comfy.ldm.wan.model
    import comfy.ldm.wan.vae
    import comfy.ops

    from pv_tools.random_wan_models import (TEXT_DIM, WAN21_VAE_CONFIG, WAN_SIZES, wan21_vae_state_dict,
                                            wan_state_dict)

    config = WAN_SIZES[size]
    model = comfy.ldm.wan.model.WanModel(model_type="t2v", num_heads=config["dim"] // 128, text_dim=TEXT_DIM,
                                         device=device, dtype=dtype,
                                         operations=operations or comfy.ops.disable_weight_init, **config)
    with torch.device(device):
        vae = comfy.ldm.wan.vae.WanVAE(**WAN21_VAE_CONFIG)
    for module in vae.modules():
        if callable(getattr(module, "optimized_attention", None)):
            module.optimized_attention = _fused_vae_attention
    if str(device) != "meta":   # the tests' random weights (core builds layers uninitialised)
        model.load_state_dict(wan_state_dict(size, seed, dtype))
        vae.load_state_dict(wan21_vae_state_dict(seed + 1, vae_dtype or dtype))
    model.requires_grad_(False).eval()
    vae.to(vae_dtype or dtype).requires_grad_(False).eval()
    return model, vae, attach_adapter(model, rank, device)


def latent_shape(frames: int, width: int, height: int, channels: int = 16, downscale: int = 8):
    """The Wan trainer's video latent for ``frames`` x ``height`` x ``width`` (``WanBackbone.latent_shape``)."""
    return (1, channels, (frames - 1) // 4 + 1, height // downscale, width // downscale)


def step_peak(parts, device, dtype, frames: int, width: int, height: int, checkpointing: bool, cfg: float,
              decode: bool = True) -> int:
    """Peak bytes of the tensors one gradient step of the Wan adapter stage creates (weights not counted):
    the diffusion model over the latent (cond and uncond batched when ``cfg`` > 1) with gradient, the
    denoised first latent frame decoded with gradient (``decode``; else the loss is on the latent), a loss on
    its pixels, backward."""
    from autograd_memory import AllocationPeak
    from comfyui_personalvideo.training.checkpointing import checkpointed, regions_of
    from comfyui_personalvideo.training.inference_tensors import gradient_window

    from pv_tools.random_wan_models import TEXT_DIM

    model, vae = parts[:2]
    batch = 2 if cfg > 1 else 1
    shape = latent_shape(frames, width, height)
    with torch.inference_mode(False), fused_attention_in_wan():
        g = torch.Generator().manual_seed(0)
        x = torch.randn((batch, *shape[1:]), generator=g).to(device, dtype) if device != "meta" else \
            torch.empty((batch, *shape[1:]), device=device, dtype=dtype)
        context = torch.zeros(batch, UMT5_TOKENS, TEXT_DIM, device=device, dtype=dtype)
        timestep = torch.full((batch,), FLOW_SIGMA * 1000.0, device=device)
        tracker = AllocationPeak()
        with tracker, gradient_window(model, vae), torch.enable_grad(), \
                checkpointed(regions_of(model, vae if decode else None), checkpointing):
            velocity = model(x, timestep, context)
            denoised = x - FLOW_SIGMA * velocity
            if batch > 1:
                denoised = denoised[:1] + (denoised[:1] - denoised[1:]) * (cfg - 1)   # cfg's combination
            pixels = vae.decode(denoised[:, :, :1]) if decode else denoised[:, :, :1]
            pixels.float().pow(2).mean().backward()
    return tracker.peak


@contextlib.contextmanager
def fused_attention_in_umt5():
    """Within the block core's T5 / umT5 layers attend as a GPU's fused kernel with an additive bias does (the
    relative-position bias and the padding mask go in as the kernel's mask; no attention matrix is kept)."""
    import comfy.text_encoders.t5 as t5

    before = t5.optimized_attention_for_device
    t5.optimized_attention_for_device = lambda *args, **kwargs: fused_attention
    try:
        yield
    finally:
        t5.optimized_attention_for_device = before


# a umT5 of core's class at a size that runs on the CPU in a moment (umT5-XXL's width, which the Wan model reads):
# the meta count is checked against it
SMALL_UMT5 = {"d_ff": 256, "d_kv": 16, "d_model": 4096, "num_heads": 4, "num_layers": 3, "vocab_size": 256,
              "dense_act_fn": "gelu_pytorch_tanh", "is_gated_act": True, "model_type": "umt5"}


def umt5_xxl(device, dtype, operations=None, config=None):
    """Core's umT5-XXL encoder (the Wan text encoder) on ``device``: on meta it takes no memory. ``dtype``
    fp8 with ``comfy.ops.manual_cast``: the fp8 file most Wan workflows load (each layer cast as it runs).
    ``config``: another umT5 configuration (:data:`SMALL_UMT5`), with random weights off the meta device."""
    import json
    import os

    import comfy.ops
    import comfy.text_encoders.t5

    if config is None:
        with open(os.path.join(os.path.dirname(comfy.text_encoders.t5.__file__), "umt5_config_xxl.json"),
                  encoding="utf-8") as f:
            config = json.load(f)
    encoder = comfy.text_encoders.t5.T5(config, dtype, device, operations or comfy.ops.disable_weight_init)
    if str(device) != "meta":   # core builds layers uninitialised
        g = torch.Generator().manual_seed(0)
        for p in encoder.parameters():
            p.data = (torch.randn(p.shape, generator=g) * 0.05).to(p.dtype)
    return encoder.requires_grad_(False).eval()


def token_step_peak(model, umt5, device, dtype, photos: int, width: int, height: int, checkpointing: bool) -> int:
    """Peak bytes of the tensors one step of the Wan token stage creates (weights not counted): one prompt of
    ``UMT5_TOKENS`` tokens through ``umt5`` with gradient to its input embeddings, the diffusion model over
    ``photos`` single-frame latents of ``height`` x ``width`` pixels with that conditioning (the Wan blocks and
    umT5's layers checkpointed when asked, as the token stage does), the flow-matching loss, backward."""
    from autograd_memory import AllocationPeak
    from comfyui_personalvideo.training.checkpointing import checkpointed, t5_regions, wan_regions
    from comfyui_personalvideo.training.inference_tensors import gradient_window

    width_in = umt5.shared.weight.shape[1]
    shape = latent_shape(1, width, height)
    with torch.inference_mode(False), fused_attention_in_wan(), fused_attention_in_umt5():
        g = torch.Generator().manual_seed(0)
        if device == "meta":
            x = torch.empty((photos, *shape[1:]), device=device, dtype=dtype)
            embeds = torch.empty(1, UMT5_TOKENS, width_in, device=device, dtype=dtype)
        else:
            x = torch.randn((photos, *shape[1:]), generator=g).to(device, dtype)
            embeds = torch.randn((1, UMT5_TOKENS, width_in), generator=g).to(device, dtype)
        mask = torch.ones(1, UMT5_TOKENS, device=device)
        timestep = torch.full((photos,), FLOW_SIGMA * 1000.0, device=device)
        tracker = AllocationPeak()
        with tracker, gradient_window(model, umt5), torch.enable_grad(), \
                checkpointed(wan_regions(model), checkpointing):
            leaf = embeds.detach().requires_grad_(True)
            # core builds the input sequence with torch.cat (the vector among the token embeddings): not a leaf
            with checkpointed(t5_regions(umt5), checkpointing):
                context = umt5(None, mask, embeds=leaf.clone(), dtype=dtype)[0]
            velocity = model(x, timestep, context.to(dtype).expand(photos, -1, -1))
            velocity.float().pow(2).mean().backward()
    return tracker.peak


def weight_bytes(*modules, dtype_bytes=None) -> int:
    """Bytes of the modules' parameters as stored (``dtype_bytes``: as if stored at that width instead)."""
    return sum(p.numel() * (dtype_bytes or p.element_size()) for m in modules if m is not None
               for p in m.parameters())


def umt5_xxl_parameters() -> int:
    """Parameters of core's umT5-XXL text encoder (the Wan text encoder), counted on the meta device."""
    return sum(p.numel() for p in umt5_xxl("meta", torch.float16).parameters())
