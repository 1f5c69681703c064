"""A regional (masked) adapter where another node replaces a block's self-attention (an attn1 replace patch).

The host then computes q, k and v itself and calls the replacement instead of attn1's forward, so the regional
blend never runs there; the adapter must still act in its region, and the console must say which block.  Real
replace patches: the host's own Self-Attention Guidance (both hosts) and Perturbed-Attention Guidance (modern
host), and two registered here with the host's set_model_attn1_replace: PAG's replacement (returns v) and a
plain attention.  With a mask over the whole picture the regional adapter must sample exactly as the unmasked
adapter does under the same patch, with an empty mask exactly as the plain model.
"""
import logging

import nodes
import pytest
import torch

from comfy.ldm.modules.attention import optimized_attention
from comfyui_personalvideo.sia import apply_sia

import sampling
from test_sia_regions import _three_level_model

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why

LATENT = torch.zeros(2, 4, 6, 8)
MIDDLE = "middle_block.1.transformer_blocks.0"


def _returns_v(q, k, v, extra_options, mask=None):
    return v


def _attention(q, k, v, extra_options, mask=None):
    return optimized_attention(q, k, v, extra_options["n_heads"])


def _registered(patch):
    def add(model):
        patched = model.clone()
        patched.set_model_attn1_replace(patch, "middle", 0)
        return patched
    return add


def _host_node(name, *args):
    if name not in nodes.NODE_CLASS_MAPPINGS:
        pytest.skip(f"this host has no {name} node")
    node = nodes.NODE_CLASS_MAPPINGS[name]
    out = node.execute(*args) if hasattr(node, "execute") else getattr(node(), node.FUNCTION)(*args)
    return (out.result if hasattr(out, "result") else out)[0]


PATCHES = {
    "registered, returns v": _registered(_returns_v),
    "registered, attention": _registered(_attention),
    "SelfAttentionGuidance": lambda model: _host_node("SelfAttentionGuidance", model, 0.5, 2.0),
    "PerturbedAttentionGuidance": lambda model: _host_node("PerturbedAttentionGuidance", model, 3.0),
}


def _sample(model, conds):
    return sampling.sample(model, *conds, steps=4, cfg=2.0, latent=LATENT)[0]


@pytest.mark.parametrize("patch", list(PATCHES))
def test_a_regional_adapter_acts_under_another_nodes_attention_replacement(make_adapter, caplog, patch):
    import tiny_models

    model = _three_level_model()
    add_patch = PATCHES[patch]
    adapter = make_adapter(model)
    conds = tiny_models.random_cond(model, 1), tiny_models.random_cond(model, 2)
    ones, zeros = torch.ones(6, 8), torch.zeros(6, 8)
    plain = _sample(add_patch(model), conds)
    whole = _sample(add_patch(apply_sia(model, adapter, 1.0, 0.5)[0]), conds)
    with caplog.at_level(logging.WARNING, logger="PersonalVideo"):
        full = _sample(add_patch(apply_sia(model, adapter, 1.0, 0.5, mask=ones)[0]), conds)
    empty = _sample(add_patch(apply_sia(model, adapter, 1.0, 0.5, mask=zeros)[0]), conds)
    assert not torch.allclose(whole, plain, atol=1e-4)
    # the whole adapter multiplies by the merged weight where the region adds its delta token by token: equal
    # up to float rounding at the output's scale
    torch.testing.assert_close(full, whole, rtol=1e-5, atol=1e-5 * float(whole.abs().max()))
    assert torch.equal(empty, plain)
    told = [r.getMessage() for r in caplog.records if "replaces the self-attention" in r.getMessage()]
    assert len(told) == 1 and MIDDLE in told[0]


def test_without_a_replace_patch_nothing_is_said(make_adapter, caplog):
    import tiny_models

    model = _three_level_model()
    conds = tiny_models.random_cond(model, 1), tiny_models.random_cond(model, 2)
    with caplog.at_level(logging.WARNING, logger="PersonalVideo"):
        _sample(apply_sia(model, make_adapter(model), 1.0, 0.5, mask=torch.ones(6, 8))[0], conds)
    assert not [r for r in caplog.records if "replaces the self-attention" in r.getMessage()]
