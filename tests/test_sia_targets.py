"""Target discovery and the promise that only the target layers ever see the delta."""
import torch

from comfyui_personalvideo.sia import apply_sia, discover_targets
from comfyui_personalvideo.sia import naming

import sampling
import tiny_models


def _expected_sd15_paths():
    blocks = [f"input_blocks.{n}.1" for n in (1, 2, 4, 5, 7, 8)] + ["middle_block.1"] + \
             [f"output_blocks.{n}.1" for n in range(3, 12)]
    return {f"{b}.transformer_blocks.0.attn1.{p}" for b in blocks for p in ("to_q", "to_k", "to_v")}


def test_sd15_size_unet_has_exactly_the_48_self_attention_projections():
    model = tiny_models.tiny_sd15_model(full_size=True, device="meta")
    found = discover_targets(model.model.diffusion_model)
    assert len(found.targets) == 48
    assert set(found.paths) == _expected_sd15_paths()
    assert found.transformer_blocks == 16 and found.cross_attention_blocks == 16
    widths = sorted({t.in_features for t in found.targets})
    assert widths == [320, 640, 1280]
    assert all(t.in_features == t.out_features for t in found.targets)
    assert "48 self-attention q/k/v layers in 16 transformer blocks" in found.summary()


def test_targets_are_attn1_linears_only(tiny_model):
    found = discover_targets(tiny_model.model.diffusion_model)
    modules = dict(tiny_model.model.diffusion_model.named_modules())
    for t in found.targets:
        assert modules[t.path] is t.module
        assert ".attn1.to_" in t.path and "attn2" not in t.path
    # 11 blocks in the small layout: 4 down, 1 middle, 6 up
    assert len(found.targets) == 33


def test_names_agree_with_the_hosts_own_diffusers_mapping():
    import comfy.utils

    for full in (False, True):
        config = tiny_models.sd15_unet_config(full_size=full)
        host_map = comfy.utils.unet_to_diffusers(dict(config))  # diffusers key -> ldm key
        ours = {}
        for path in (_expected_sd15_paths() if full else discover_targets(
                tiny_models.tiny_sd15_model(device="meta").model.diffusion_model).paths):
            ours[naming.to_diffusers(path) + ".weight"] = path + ".weight"
            assert naming.from_diffusers(naming.to_diffusers(path)) == path
            assert naming.parse_kohya_module_key(naming.kohya_module_key(path)) == path
        for diffusers_key, ldm_key in ours.items():
            assert host_map[diffusers_key] == ldm_key


def test_only_the_target_layers_see_the_delta(tiny_model, conds, make_adapter):
    """Record every Linear's input and output in an adapted run; recompute them with the plain layer."""
    patched, found, state = apply_sia(tiny_model, make_adapter(tiny_model), 1.0, 0.0)
    targets = set(found.paths)
    assert set(k[len("diffusion_model."):-len(".forward")] for k in patched.object_patches) == targets
    records = {}
    linears = {n: m for n, m in tiny_model.model.diffusion_model.named_modules() if isinstance(m, torch.nn.Linear)}

    def recorder(name):
        def hook(module, inputs, output):
            records.setdefault(name, (inputs[0].detach().clone(), output.detach().clone()))
        return hook

    hooks = [m.register_forward_hook(recorder(n)) for n, m in linears.items()]
    try:
        sampling.sample(patched, *conds, steps=1, cfg=1.5)
    finally:
        for h in hooks:
            h.remove()
    assert set(records) == set(linears)
    changed = {n for n, (x, y) in records.items() if not torch.equal(type(linears[n]).forward(linears[n], x), y)}
    assert changed == targets
    cross = [n for n in records if ".attn2." in n]
    assert cross and not set(cross) & changed


def test_two_adapters_on_two_clones_in_one_graph(tiny_model, conds, make_adapter):
    a_alone, _ = sampling.sample(apply_sia(tiny_model, make_adapter(tiny_model, seed=1), 1.0, 0.0)[0], *conds, steps=2)
    clone_a = apply_sia(tiny_model, make_adapter(tiny_model, seed=1), 1.0, 0.0)[0]
    clone_b = apply_sia(tiny_model, make_adapter(tiny_model, seed=2), 1.0, 0.0)[0]
    out_a, _ = sampling.sample(clone_a, *conds, steps=2)
    out_b, _ = sampling.sample(clone_b, *conds, steps=2)
    base, _ = sampling.sample(tiny_model, *conds, steps=2)
    again_a, _ = sampling.sample(clone_a, *conds, steps=2)
    assert torch.equal(out_a, a_alone) and torch.equal(again_a, a_alone)
    assert not torch.equal(out_a, out_b)
    assert not torch.equal(out_a, base) and not torch.equal(out_b, base)


def test_stacking_two_adapters_on_one_clone_adds_both(tiny_model, conds, make_adapter):
    one = apply_sia(tiny_model, make_adapter(tiny_model, seed=1), 1.0, 0.0)[0]
    both = apply_sia(one, make_adapter(tiny_model, seed=2), 1.0, 0.0)[0]
    out_one, _ = sampling.sample(one, *conds, steps=1)
    out_both, _ = sampling.sample(both, *conds, steps=1)
    assert not torch.equal(out_one, out_both)
    assert len(both.object_patches) == len(one.object_patches) == 33
