"""Tiny diffusers models for the engine's tests, built from diffusers' and transformers' own classes with random
weights (nothing is downloaded: every config is given here); the tokenizer is SD1.5's, from the ComfyUI host."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every config is given here; diffusers/transformers must never fetch

import torch  # noqa: E402

import host  # noqa: E402

WIDTHS = (32, 64)


def tiny_engine_models(seed: int = 0, motion: bool = True):
    """EngineModels with a small SD1.5-layout UNet (two levels, all with spatial transformers), a narrow 8x
    VAE, a 2-layer CLIP text model and (``motion``) AnimateDiff motion modules of the same widths."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from comfyui_personalvideo.engine import models

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=WIDTHS,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
            norm_num_groups=32, attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=32,
                            layers_per_block=1)
        text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, vocab_size=49408, max_position_embeddings=77))
        tokenizer = CLIPTokenizer.from_pretrained(os.path.join(host.host_root(), "comfy", "sd1_tokenizer"),
                                                  local_files_only=True)
        engine = models.EngineModels(unet, vae, text, tokenizer).freeze()
        if motion:
            models.add_motion(engine, tiny_motion_adapter(seed + 1))
    return engine


def tiny_motion_adapter(seed: int = 1):
    from diffusers import MotionAdapter

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        adapter = MotionAdapter(block_out_channels=WIDTHS, motion_layers_per_block=2, motion_norm_num_groups=32,
                                motion_num_attention_heads=2, motion_max_seq_length=16)
        # diffusers zero-initialises the motion modules' output projections (a no-op at first): give them
        # weights, so frames really exchange information as in a trained motion model
        for name, p in adapter.named_parameters():
            if name.endswith("proj_out.weight"):
                torch.nn.init.normal_(p, std=0.05)
    return adapter


def save_tiny_checkpoint(path: str, seed: int = 0) -> str:
    """A single-file checkpoint in the SD1.5 (ldm) key layout, small: ComfyUI's tiny UNet, VAE and CLIP text
    model (tests/tiny_models.py) under the prefixes a real SD1.5 file uses."""
    from safetensors.torch import save_file

    import tiny_models

    with torch.inference_mode():
        unet = tiny_models.tiny_sd15_model(seed=seed).model.diffusion_model
        vae = tiny_models.tiny_vae().first_stage_model
        clip = tiny_models.tiny_clip().cond_stage_model
        sd = {"model.diffusion_model." + k: v.clone() for k, v in unet.state_dict().items()}
        sd.update({"first_stage_model." + k: v.clone() for k, v in vae.state_dict().items()})
        sd.update({"cond_stage_model.transformer." + k[len("clip_l.transformer."):]: v.clone()
                   for k, v in clip.state_dict().items() if k.startswith("clip_l.transformer.")})
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    return path


def engine_models_like(model, clip, vae):
    """EngineModels holding the very weights of a ComfyUI MODEL, CLIP and VAE (tests/tiny_models.py), mapped as
    the engine maps a checkpoint's; the text model with the CLIP's own number of attention heads (the engine
    reads it as width / 64, which a tiny CLIP is not)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from comfyui_personalvideo.engine import models

    def copied(module, prefix=""):
        return {k[len(prefix):]: v.detach().clone() for k, v in module.state_dict().items() if k.startswith(prefix)}

    unet, res_blocks = models.unet_from_ldm(copied(model.model.diffusion_model))
    image_vae = models.vae_from_ldm(copied(vae.first_stage_model))
    text = models.text_encoder_from_ldm(copied(clip.cond_stage_model, "clip_l.transformer."))
    heads = clip.cond_stage_model.clip_l.transformer.text_model.encoder.layers[0].self_attn.heads
    same = CLIPTextModel(CLIPTextConfig(**dict(text.config.to_dict(), num_attention_heads=int(heads))))
    same.load_state_dict(text.state_dict())
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(host.host_root(), "comfy", "sd1_tokenizer"),
                                              local_files_only=True)
    return models.EngineModels(unet, image_vae, same, tokenizer, res_blocks=res_blocks).freeze()
