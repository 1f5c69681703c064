"""Apply SIA's adapted steps multiply by the layer's weight with the delta merged in, where the layer's forward is a
plain product with the weight it holds; elsewhere (low-VRAM casts, patches' weight functions, other packs' layers,
anything needing a gradient) the delta is added to the layer's own output as before. Same results either way."""
import torch

import random_adapters
import sampling
import tiny_models
from comfyui_personalvideo.sia import apply_sia, lora, patch


def _run(model, adapter, monkeypatch, merge: bool):
    calls = []
    original = lora.merged_weight

    def counted(*args):
        out = original(*args) if merge else None
        calls.append(out is not None)
        return out

    monkeypatch.setattr(patch, "merged_weight", counted)
    patched = apply_sia(model, adapter, 1.0, 0.0, 1.0)[0]
    with torch.inference_mode():
        out, _ = sampling.sample(patched, tiny_models.random_cond(model, 1), tiny_models.random_cond(model, 2),
                                 steps=2, cfg=1.5, size=32, sampler_name="euler")
    return out, calls


def test_the_merged_product_gives_the_delta_added_to_the_output(monkeypatch):
    with torch.inference_mode():
        model = tiny_models.tiny_sd15_model(seed=0)
        adapter = random_adapters.random_adapter(model, seed=0, rank=4, alpha=4.0, std=0.05)
    merged, calls = _run(model, adapter, monkeypatch, merge=True)
    added, _ = _run(model, adapter, monkeypatch, merge=False)
    plain, _ = _run(model, random_adapters.random_adapter(model, seed=0, rank=4, alpha=4.0, std=0.0),
                    monkeypatch, merge=False)
    assert calls and all(calls)   # every adapted call of this model's plain layers took the merged product
    change = (added - plain).abs().max()
    assert change > 0   # the adapter changes the result: the comparison below is not of two plain runs
    torch.testing.assert_close(merged, added, rtol=1e-5, atol=1e-5 * float(added.abs().max()))
    assert (merged - added).abs().max() < 1e-3 * change


def test_in_half_precision_the_merged_weight_loses_nothing_against_the_added_delta():
    """fp16 rounds the merged weight once (as ComfyUI rounds a merged LoRA); the delta added to the fp16 output is
    rounded with the output. Against the exact delta (fp64) both err alike, for deltas 0.3 % to 5 % of the weight."""
    g = torch.Generator().manual_seed(0)
    for relative in (0.003, 0.01, 0.05):
        weight = (torch.randn(320, 320, generator=g) * 0.05).half()
        x = torch.randn(1024, 320, generator=g).half()
        down, up = torch.randn(4, 320, generator=g) * 0.05, torch.randn(320, 4, generator=g)
        up = up * relative * float(weight.double().std()) / float((up @ down).double().std())
        down, up = down.half(), up.half()
        exact = x.double() @ (up.double() @ down.double()).T
        base = x.double() @ weight.double().T
        with torch.no_grad():
            added = lora.add_lora_delta(torch.nn.functional.linear(x, weight), x, down, up, 1.0)
            merged = torch.nn.functional.linear(x, torch.addmm(weight, up, down))

        def error(out):
            return float(((out.double() - base) - exact).norm() / exact.norm())

        assert error(merged) < 1.1 * error(added) + 1e-3, (relative, error(merged), error(added))


def _layer(**attrs):
    import comfy.ops

    with torch.inference_mode():
        layer = comfy.ops.disable_weight_init.Linear(8, 6, bias=True)
        layer.weight = torch.nn.Parameter(torch.randn(6, 8), requires_grad=False)
        layer.bias = torch.nn.Parameter(torch.randn(6), requires_grad=False)
    for k, v in attrs.items():
        setattr(layer, k, v)
    return layer


def test_layers_whose_forward_is_not_a_plain_product_keep_the_added_delta():
    x, down, up = torch.randn(3, 8), torch.randn(2, 8), torch.randn(6, 2)
    with torch.no_grad():
        layer = _layer()
        merged = lora.merged_weight(layer, x, down, up, 0.5)
        torch.testing.assert_close(torch.nn.functional.linear(x, merged, layer.bias),
                                   layer(x) + lora.lora_delta(x, down, up, 0.5))
        assert lora.merged_weight(_layer(comfy_cast_weights=True), x, down, up, 0.5) is None      # low-VRAM cast
        assert lora.merged_weight(_layer(weight_function=[lambda w: w]), x, down, up, 0.5) is None  # a patch
        assert lora.merged_weight(layer, x.double(), down.double(), up.double(), 0.5) is None     # other dtype

        class OtherPacksLinear(torch.nn.Linear):
            def forward(self, x):
                return super().forward(x) * 2

        assert lora.merged_weight(OtherPacksLinear(8, 6), x, down, up, 0.5) is None
    assert lora.merged_weight(layer, x, down.requires_grad_(), up, 0.5) is None   # training: the gradient's path
    with torch.no_grad():   # a trained adapter in a checkpointed layer's forward: what its recomputation computes
        assert lora.merged_weight(layer, x, down, up, 0.5, trainable=True) is None
    with torch.inference_mode():   # the trainer's sampling steps: the merged product
        assert lora.merged_weight(layer, x, down, up, 0.5, trainable=True) is not None
