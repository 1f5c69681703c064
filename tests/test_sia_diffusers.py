"""An adapter file travels outside ComfyUI: diffusers maps it onto the same layers."""
import os

import pytest
import torch

from comfyui_personalvideo.sia import naming, save_adapter

import host

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")


def _tiny_animatediff_pipeline():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=32, attention_head_dim=8)
    adapter = diffusers.MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=2,
                                      motion_norm_num_groups=32, motion_num_attention_heads=2,
                                      motion_max_seq_length=16)
    vae = diffusers.AutoencoderKL(block_out_channels=(32,), down_block_types=("DownEncoderBlock2D",),
                                  up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                                num_attention_heads=4, vocab_size=49408))
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(host.host_root(), "comfy", "sd1_tokenizer"))
    return diffusers.AnimateDiffPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                         motion_adapter=adapter, scheduler=diffusers.DDIMScheduler())


def test_diffusers_loads_the_file_onto_spatial_self_attention_only(tmp_path, tiny_model, make_adapter):
    adapter = make_adapter(tiny_model, rank=4, alpha=2.0)
    path = save_adapter(adapter, str(tmp_path / "identity.safetensors"))
    pipe = _tiny_animatediff_pipeline()
    unet = pipe.unet
    assert type(unet).__name__ == "UNetMotionModel"
    motion_attn = [n for n, _ in unet.named_modules() if "motion_modules" in n and n.endswith("attn1.to_q")]
    assert motion_attn  # the motion modules have attn1.to_q layers too: they must stay untouched
    pipe.load_lora_weights(str(tmp_path), weight_name="identity.safetensors", adapter_name="identity")
    adapted = {n for n, m in unet.named_modules() if hasattr(m, "lora_A") and "identity" in m.lora_A}
    expected = {naming.to_diffusers(p) for p in adapter.paths}
    assert adapted == expected
    assert not any("motion_modules" in n or "attn2" in n for n in adapted)
    # the delta diffusers computes is ours: up(down(x)) * alpha / rank
    probe = naming.to_diffusers(adapter.paths[0])
    layer = dict(unet.named_modules())[probe]
    x = torch.randn(2, layer.in_features)
    with torch.no_grad():
        delta = layer(x) - layer.base_layer(x)
    want = x @ adapter.down[adapter.paths[0]].T @ adapter.up[adapter.paths[0]].T * (2.0 / 4)
    torch.testing.assert_close(delta, want, rtol=1e-4, atol=1e-5)
