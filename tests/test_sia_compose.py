"""The adapter composes with what artists combine it with: LoRAs and ControlNet."""
import os

import pytest
import torch

import folder_paths
import nodes
from comfyui_personalvideo.sia import apply_sia, save_adapter

import sampling
import tiny_models

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why


def _node(name):
    return nodes.NODE_CLASS_MAPPINGS[name]()


def _lora_file(name):
    return os.path.join(folder_paths.get_folder_paths("loras")[0], name)


def _lora_weight_keys(model):
    keys = set(model.patches)
    return {k[len("diffusion_model."):-len(".weight")] for k in keys}


def test_stock_lora_loader_applies_the_file_to_exactly_the_same_layers(tiny_model, make_adapter, conds):
    adapter = make_adapter(tiny_model)
    save_adapter(adapter, _lora_file("sia_as_lora.safetensors"))
    (lora_model,) = _node("LoraLoaderModelOnly").load_lora_model_only(tiny_model, "sia_as_lora.safetensors", 1.0)
    assert _lora_weight_keys(lora_model) == set(adapter.paths)
    # merged into the weights by ComfyUI = our forward delta on every step, numerically
    merged, _ = sampling.sample(lora_model, *conds, steps=2, cfg=1.5)
    ours, _ = sampling.sample(apply_sia(tiny_model, adapter, 1.0, 0.0)[0], *conds, steps=2, cfg=1.5)
    base, _ = sampling.sample(tiny_model, *conds, steps=2, cfg=1.5)
    assert not torch.allclose(ours, base, atol=1e-3)
    torch.testing.assert_close(merged, ours, rtol=1e-4, atol=1e-4)


def test_style_lora_and_adapter_both_act(tiny_model, make_adapter, conds):
    style_layers = tiny_models.save_kohya_lora(_lora_file("style.safetensors"), tiny_model,
                                               lambda p: ".attn2." in p or ".ff." in p)
    assert style_layers
    (styled,) = _node("LoraLoaderModelOnly").load_lora_model_only(tiny_model, "style.safetensors", 1.0)
    both = apply_sia(styled, make_adapter(tiny_model), 1.0, 0.75)[0]
    _, base = sampling.sample(tiny_model, *conds, steps=4)
    _, style_only = sampling.sample(styled, *conds, steps=4)
    _, combined = sampling.sample(both, *conds, steps=4)
    assert not torch.equal(style_only[0], base[0])                                  # the LoRA acts from step 0
    assert all(torch.equal(a, b) for a, b in zip(style_only[:3], combined[:3]))    # adapter off before the gate
    assert not torch.equal(style_only[3], combined[3])                              # and on at the last step
    assert _lora_weight_keys(both) == set(style_layers)                             # LoRA patches survive


def test_controlnet_conditioning_and_adapter_both_act(make_adapter):
    tiny_model = tiny_models.tiny_sd15_model(model_channels=64)
    conds = tiny_models.random_cond(tiny_model, 1), tiny_models.random_cond(tiny_model, 2)
    name = "tiny_control.safetensors"
    tiny_models.save_tiny_controlnet(os.path.join(folder_paths.get_folder_paths("controlnet")[0], name))
    (control,) = _node("ControlNetLoader").load_controlnet(name)
    hint = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(7))
    positive, negative = conds
    apply = _node("ControlNetApplyAdvanced")
    result = apply.apply_controlnet(positive, negative, control, hint, 1.0, 0.0, 1.0)
    cpos, cneg = result[0], result[1]
    patched = apply_sia(tiny_model, make_adapter(tiny_model), 1.0, 0.75)[0]
    _, plain = sampling.sample(tiny_model, positive, negative, steps=4, cfg=1.5)
    _, controlled = sampling.sample(tiny_model, cpos, cneg, steps=4, cfg=1.5)
    _, both = sampling.sample(patched, cpos, cneg, steps=4, cfg=1.5)
    assert not torch.equal(plain[0], controlled[0])
    assert all(torch.equal(a, b) for a, b in zip(controlled[:3], both[:3]))
    assert not torch.equal(controlled[3], both[3])
