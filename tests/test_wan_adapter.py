"""The identity adapter on core Wan: targets, the file (ours and other trainers' layouts), Apply, the user's MODEL.

Tiny random Wan models built from core's WanModel and loaded by core's own
detection (tests/wan_models.py); the 2024 host has no Wan, and there these
tests skip and say why.
"""
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import wan_models

wan_models.skip_without_wan()

from comfyui_personalvideo.sia import SIAError, apply_sia, load_adapter, save_adapter  # noqa: E402
from comfyui_personalvideo.sia import families, wan_keys  # noqa: E402


@pytest.fixture(scope="module")
def wan():
    return wan_models.tiny_wan_model(seed=0)


@pytest.fixture(scope="module")
def adapter(wan):
    return wan_models.random_wan_adapter(wan)


def test_core_detects_the_tiny_model_as_wan_and_the_targets_are_self_attention_qkv_only(wan):
    dm = wan.model.diffusion_model
    assert type(wan.model).__name__ == "WAN21" and families.family_of(dm) == families.WAN
    found = families.discover(dm)
    assert found.paths == [f"blocks.{b}.self_attn.{p}" for b in range(2) for p in "qkv"]
    modules = dict(dm.named_modules())
    assert all(modules[t.path] is t.module for t in found.targets)
    assert not any("cross_attn" in p or "ffn" in p or p.endswith(".o") for p in found.paths)
    assert "6 self-attention q/k/v layers in 2 Wan attention blocks" in found.summary()


def test_ti2v_5b_layout_fits_the_same_code():
    m = wan_models.tiny_wan_model("tiny_ti2v", seed=0)
    assert type(m.model).__name__ == "WAN22"
    assert families.discover(m.model.diffusion_model).paths[:3] == ["blocks.0.self_attn.q", "blocks.0.self_attn.k",
                                                                    "blocks.0.self_attn.v"]


def test_the_sd15_path_is_unchanged_by_the_family_switch(tiny_model):
    assert families.family_of(tiny_model.model.diffusion_model) == families.SD15
    from comfyui_personalvideo.sia import discover_targets

    dm = tiny_model.model.diffusion_model
    assert families.discover(dm).paths == discover_targets(dm).paths and len(discover_targets(dm).paths) == 33


def test_file_keys_are_core_wan_lora_keys_and_round_trip_exactly(tmp_path, wan, adapter):
    import comfy.lora

    path = save_adapter(adapter, str(tmp_path / "w.safetensors"))
    tensors = load_file(path)
    assert "lora_unet_blocks_1_self_attn_v.lora_down.weight" in tensors and len(tensors) == 6 * 3
    key_map = comfy.lora.model_lora_keys_unet(wan.model, {})
    for key in tensors:
        module = key.rsplit(".lora_", 1)[0].rsplit(".alpha", 1)[0]
        assert key_map[module].startswith("diffusion_model.blocks.") and ".self_attn." in key_map[module]
    loaded = load_adapter(path)
    assert loaded.info.base == "wan" and loaded.paths == adapter.paths and loaded.alpha == adapter.alpha
    assert all(torch.equal(loaded.up[p], adapter.up[p]) and torch.equal(loaded.down[p], adapter.down[p])
               for p in adapter.paths)


def _layout(adapter, layout: str, alpha=True) -> dict:
    tensors = {}
    for p in adapter.paths:
        block, proj = int(p.split(".")[1]), p[-1]
        if layout == "musubi":
            key, down, up = f"lora_unet_blocks_{block}_self_attn_{proj}", ".lora_down.weight", ".lora_up.weight"
        elif layout == "diffusers":
            key, down, up = f"transformer.blocks.{block}.attn1.to_{proj}", ".lora_A.weight", ".lora_B.weight"
        else:
            key, down, up = f"diffusion_model.{p}", ".lora_down.weight", ".lora_up.weight"
        tensors[key + down] = adapter.down[p].to(torch.bfloat16 if layout == "musubi" else torch.float32).contiguous()
        tensors[key + up] = adapter.up[p].to(torch.bfloat16 if layout == "musubi" else torch.float32).contiguous()
        if alpha:
            tensors[key + ".alpha"] = torch.tensor(adapter.alpha)
    return tensors


@pytest.mark.parametrize("layout,alpha", [("musubi", True), ("diffusers", False), ("comfy", True)])
def test_other_trainers_layouts_load_as_the_same_adapter(tmp_path, wan, adapter, layout, alpha):
    path = str(tmp_path / f"{layout}.safetensors")
    save_file(_layout(adapter, layout, alpha), path, metadata={"ss_network_dim": "4"} if layout == "musubi" else None)
    loaded = load_adapter(path)
    assert loaded.info.base == "wan" and loaded.paths == adapter.paths
    tol = dict(rtol=1e-2, atol=1e-2) if layout == "musubi" else dict(rtol=0, atol=0)
    for p in adapter.paths:   # the delta up @ down * alpha / rank is the same (diffusers: no alpha, scale 1)
        want = adapter.up[p] @ adapter.down[p] * adapter.scale(1.0)
        got = loaded.up[p] @ loaded.down[p] * loaded.scale(1.0)
        assert torch.allclose(got, want * (1.0 if alpha else adapter.rank / adapter.alpha), **tol)
    assert loaded.info.training["imported_from"] in ("kohya / musubi-tuner", "diffusers", "ComfyUI")
    apply_sia(wan, loaded, 1.0, 0.75)   # fits the model


def test_layers_with_different_alphas_keep_their_deltas(tmp_path, adapter):
    tensors = _layout(adapter, "comfy")
    tensors["diffusion_model.blocks.1.self_attn.k.alpha"] = torch.tensor(8.0)
    save_file(tensors, str(tmp_path / "a.safetensors"))
    loaded = load_adapter(str(tmp_path / "a.safetensors"))
    p = "blocks.1.self_attn.k"
    assert torch.allclose(loaded.up[p] @ loaded.down[p] * loaded.scale(1.0),
                          adapter.up[p] @ adapter.down[p] * 8.0 / adapter.rank)


@pytest.mark.parametrize("extra,message", [
    ("lora_unet_blocks_0_cross_attn_q", "not self-attention q/k/v LoRA weights of a Wan block"),
    ("lora_unet_blocks_0_ffn_0", "LoraLoaderModelOnly"),
])
def test_a_full_lora_is_refused_with_the_core_route_named(tmp_path, adapter, extra, message):
    tensors = _layout(adapter, "musubi")
    tensors[extra + ".lora_down.weight"] = torch.zeros(4, 256)
    tensors[extra + ".lora_up.weight"] = torch.zeros(256, 4)
    save_file(tensors, str(tmp_path / "full.safetensors"))
    with pytest.raises(SIAError, match=message) as e:
        load_adapter(str(tmp_path / "full.safetensors"))
    assert "full.safetensors" in str(e.value)


def test_an_incomplete_block_is_refused(tmp_path, adapter):
    tensors = {k: v for k, v in _layout(adapter, "musubi").items() if "blocks_1_self_attn_k" not in k}
    save_file(tensors, str(tmp_path / "part.safetensors"))
    with pytest.raises(SIAError, match="blocks.1.self_attn lacks some of q/k/v"):
        load_adapter(str(tmp_path / "part.safetensors"))


def test_adapters_of_the_other_family_or_size_are_refused_before_anything_is_patched(wan, adapter, tiny_model,
                                                                                   make_adapter):
    with pytest.raises(SIAError, match=r"made for SD1.5 / AnimateDiff models .* this MODEL is a Wan model"):
        apply_sia(wan, make_adapter(tiny_model), 1.0, 0.75)
    with pytest.raises(SIAError, match=r"made for Wan 2.1 / 2.2 models .* this MODEL is SD1.5"):
        apply_sia(tiny_model, adapter, 1.0, 0.75)
    wider = wan_models.tiny_wan_model("tiny_ti2v", seed=0)   # same width: fits; a wider model does not
    apply_sia(wider, adapter, 1.0, 0.75)
    shallow = adapter.detached_copy()
    for p in [p for p in shallow.paths if p.startswith("blocks.1.")]:
        del shallow.down[p], shallow.up[p]
    with pytest.raises(SIAError, match="missing from the adapter.*low-noise expert"):
        apply_sia(wan, shallow, 1.0, 0.75)
    with pytest.raises(SIAError, match="mask input works on SD1.5"):
        apply_sia(wan, adapter, 1.0, 0.75, mask=torch.ones(8, 8))
    assert wan.object_patches == {} and tiny_model.object_patches == {}


def test_apply_leaves_the_users_model_unchanged_and_strength_0_adds_nothing(wan, adapter):
    plain_before = wan_models.sample(wan)
    patched, found, state = apply_sia(wan, adapter, 1.0, 0.75)
    adapted = wan_models.sample(patched)
    assert not torch.equal(adapted, plain_before)
    assert wan.object_patches == {} and not wan.wrappers and wan.model_options.get("transformer_options", {}) == {}
    assert torch.equal(wan_models.sample(wan), plain_before)          # bit for bit, after the patched run
    zero = apply_sia(wan, adapter, 0.0, 0.75)[0]
    assert zero.object_patches == {} and not zero.wrappers
    assert torch.equal(wan_models.sample(zero), plain_before)


def test_nodes_load_and_apply_a_wan_file_from_models_sia(tmp_path, wan, adapter):
    import folder_paths

    from comfyui_personalvideo.nodes.apply_sia import ApplySIALateSteps
    from comfyui_personalvideo.nodes.load_sia_adapter import LoadSIAAdapter

    folder = folder_paths.get_folder_paths("sia")[0]
    os.makedirs(folder, exist_ok=True)
    save_file(_layout(adapter, "diffusers", alpha=False), os.path.join(folder, "wan_diffusers_test.safetensors"))
    try:
        loaded, trigger = LoadSIAAdapter().load("wan_diffusers_test.safetensors")
        (patched,) = ApplySIALateSteps().apply(wan, loaded, 1.0, 0.75)
        assert trigger == "" and loaded.info.base == "wan"
        assert not torch.equal(wan_models.sample(patched), wan_models.sample(wan))
    finally:
        os.remove(os.path.join(folder, "wan_diffusers_test.safetensors"))


def test_the_file_loads_in_stock_lora_loader_model_only_with_the_same_output(wan, adapter):
    """Every step adapted (start 0): the weight merge of LoraLoaderModelOnly and our forward patches agree."""
    import folder_paths
    import nodes

    folder = folder_paths.get_folder_paths("loras")[0]
    os.makedirs(folder, exist_ok=True)
    path = save_adapter(adapter, os.path.join(folder, "wan_sia_as_lora.safetensors"))
    try:
        (lora_model,) = nodes.NODE_CLASS_MAPPINGS["LoraLoaderModelOnly"]().load_lora_model_only(
            wan, "wan_sia_as_lora.safetensors", 1.0)
        ours = wan_models.sample(apply_sia(wan, adapter, 1.0, 0.0)[0])
        merged = wan_models.sample(lora_model)
        plain = wan_models.sample(wan)
        assert (merged - ours).abs().max() < 1e-3 * (ours - plain).abs().max()
    finally:
        os.remove(path)
