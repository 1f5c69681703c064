"""Two masked identities compose with what artists combine them with: a ControlNet (pose), a style LoRA and the
noise prior, all on one MODEL. Every self-attention call of the composed run is replayed on the same composition
with adapter A alone, adapter B alone and no adapter: token by token each region is its own identity's, outside
both the plain composition's, and the steps before the gate are the plain composition's bit for bit."""
import os

import pytest
import torch

import folder_paths
import nodes
from comfyui_personalvideo.noise_prior.sampling_hook import with_noise_prior
from comfyui_personalvideo.sia import apply_sia

import sampling
import tiny_models
from test_sia_regions import COLUMNS, FRAMES, ROWS, _column_masks, _conds, _run, _token_masks

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why


def _wide_three_level_model():
    """Three resolutions at 64 channels: the narrowest a ControlNet loaded by ComfyUI fits."""
    import comfy.model_base
    import comfy.model_patcher

    config = tiny_models.sd15_model_config(tiny_models.sd15_unet_config(model_channels=64, channel_mult=(1, 2, 2)))
    base = comfy.model_base.BaseModel(config, device="cpu")
    tiny_models.initialise(base.diffusion_model, 0)
    base.eval()
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def _composition(model):
    """The style LoRA and the noise prior on the MODEL; the ControlNet on the conditioning (as the nodes do)."""
    lora = "regions_style.safetensors"
    style_layers = tiny_models.save_kohya_lora(os.path.join(folder_paths.get_folder_paths("loras")[0], lora), model,
                                               lambda p: ".attn2." in p or ".ff." in p)
    (styled,) = nodes.LoraLoaderModelOnly().load_lora_model_only(model, lora, 1.0)
    control_file = "regions_control.safetensors"
    tiny_models.save_tiny_controlnet(os.path.join(folder_paths.get_folder_paths("controlnet")[0], control_file),
                                     channel_mult=(1, 2, 2))
    (control,) = nodes.ControlNetLoader().load_controlnet(control_file)
    pose = torch.rand(1, ROWS * 8, COLUMNS * 8, 3, generator=torch.Generator().manual_seed(7))
    positive, negative = _conds(model)
    controlled = nodes.ControlNetApplyAdvanced().apply_controlnet(positive, negative, control, pose, 1.0, 0.0, 1.0)
    return with_noise_prior(styled, 0.6), (controlled[0], controlled[1]), (positive, negative), style_layers


def test_two_regions_compose_with_controlnet_a_style_lora_and_the_noise_prior(make_adapter):
    model = _wide_three_level_model()
    composed, conds, plain_conds, style_layers = _composition(model)
    adapter_a, adapter_b = make_adapter(model, seed=1, name="alice"), make_adapter(model, seed=2, name="bob")
    mask_a, mask_b = _column_masks([[0]], [[2]])          # column 1 between them is nobody's
    both = apply_sia(apply_sia(composed, adapter_a, 1.0, 0.75, mask=mask_a)[0], adapter_b, 1.0, 0.75,
                     mask=mask_b)[0]
    assert {k[len("diffusion_model."):-len(".weight")] for k in both.patches} == set(style_layers)

    stacked = _run(both, conds)
    only_a = _run(apply_sia(composed, adapter_a, 1.0, 0.75)[0], conds, replay=stacked)
    only_b = _run(apply_sia(composed, adapter_b, 1.0, 0.75)[0], conds, replay=stacked)
    plain = _run(composed, conds, replay=stacked)
    per_step = len(stacked) // 4
    resolutions = set()
    for index, ((_, out), (_, out_a), (_, out_b), (_, out_p)) in enumerate(zip(stacked, only_a, only_b, plain)):
        if index < 3 * per_step:
            assert torch.equal(out, out_p)
            continue
        batch, tokens = out.shape[:2]
        w_a, w_b = _token_masks(mask_a, tokens, batch), _token_masks(mask_b, tokens, batch)
        in_a, in_b, outside = w_a == 1, w_b == 1, (w_a == 0) & (w_b == 0)
        torch.testing.assert_close(out[in_a], out_a[in_a], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[in_b], out_b[in_b], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[outside], out_p[outside], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(out_a[in_a], out_p[in_a], atol=1e-4)
        resolutions.add(tokens)
    assert resolutions == {ROWS * COLUMNS, 24, 6}

    # each part of the composition still acts on the result: the ControlNet, the noise prior and the identities
    latent = torch.zeros(FRAMES, 4, ROWS, COLUMNS)
    final = sampling.sample(both, *conds, steps=4, cfg=2.0, latent=latent)[0]
    assert not torch.equal(final, sampling.sample(both, *plain_conds, steps=4, cfg=2.0, latent=latent)[0])
    unprimed = apply_sia(apply_sia(nodes.LoraLoaderModelOnly().load_lora_model_only(
        model, "regions_style.safetensors", 1.0)[0], adapter_a, 1.0, 0.75, mask=mask_a)[0], adapter_b, 1.0, 0.75,
        mask=mask_b)[0]
    assert not torch.equal(final, sampling.sample(unprimed, *conds, steps=4, cfg=2.0, latent=latent)[0])
    assert not torch.equal(final, sampling.sample(composed, *conds, steps=4, cfg=2.0, latent=latent)[0])
