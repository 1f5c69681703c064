"""The gradient window's layer-wide aliasing (:func:`inference_tensors.layers`): a layer called with gradient
reads aliases for its whole subtree for the length of its call, modules outside it that it calls are still
aliased, and every table holds the model's own tensors again once the call is over, an error included."""
import pytest
import torch
from torch import nn

from comfyui_personalvideo.training.inference_tensors import gradient_window, layers


class Layer(nn.Module):
    """A layer with nested modules that also calls a module it does not hold (as an attention patch of another
    pack calls its own projections from inside a UNet layer)."""

    def __init__(self, outside: nn.Module):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
        self.head = nn.Linear(8, 8)
        self.__dict__["outside"] = outside   # not a child: outside this layer's subtree
        self.fail = False

    def forward(self, x):
        h = self.block(x)
        if self.fail:
            raise RuntimeError("a layer that stops half way")
        return self.head(h + self.outside(h))


def _models():
    torch.manual_seed(0)
    with torch.inference_mode():   # as a node loads them: inference weights
        outside = nn.Linear(8, 8)
        layer = Layer(outside)
    return layer, outside


def _tensors(*modules):
    return {f"{i}.{n}": t for i, m in enumerate(modules) for n, t in list(m.named_parameters()) +
            list(m.named_buffers())}


def _reference_gradient(layer, outside, x):
    """The gradient of the same loss through normal copies of the weights (no window)."""
    with torch.inference_mode(False):
        ref_outside = nn.Linear(8, 8)
        ref = Layer(ref_outside)
        with torch.no_grad():
            for mine, theirs in ((ref, layer), (ref_outside, outside)):
                for (_, p), (_, q) in zip(mine.named_parameters(), theirs.named_parameters()):
                    p.copy_(q)
        xg = x.clone().requires_grad_(True)
        ref(xg).pow(2).sum().backward()
        return xg.grad


def test_a_layer_call_aliases_its_subtree_and_what_it_calls_and_puts_everything_back():
    layer, outside = _models()
    before = _tensors(layer, outside)
    seen = {}
    inner = layer.block[0]
    handle = inner.register_forward_hook(
        lambda m, a, o: seen.update(inner=m.weight.is_inference(), head=layer.head.weight.is_inference()))
    x = torch.randn(3, 8)
    try:
        with torch.inference_mode():   # a node's gradient step
            with gradient_window(layer) as window, layers([layer]):
                xg = x.clone().requires_grad_(True)
                layer(xg).pow(2).sum().backward()
                now = _tensors(layer, outside)   # between calls: the model's own tensors
                assert now.keys() == before.keys() and all(now[k] is before[k] for k in before)
                assert not window.fell_back                 # the outside module was aliased by its own call
    finally:
        handle.remove()
    assert seen == {"inner": False, "head": False}   # during the call: the whole layer reads aliases
    assert all(a is b for a, b in zip(_tensors(layer, outside).values(), before.values()))
    assert torch.allclose(xg.grad, _reference_gradient(layer, outside, x), rtol=1e-5, atol=1e-6)


def test_a_layer_that_raises_leaves_its_modules_to_alias_themselves_again():
    """After an error inside a layer call its tables are the model's again and none of its modules is left
    counted as covered: a later call of one of them with gradient aliases its own weights (were it left
    covered, autograd would meet the inference weight and refuse it)."""
    layer, outside = _models()
    before = _tensors(layer, outside)
    with torch.inference_mode():
        with gradient_window(layer) as window, layers([layer]):
            layer.fail = True
            with pytest.raises(RuntimeError, match="half way"):
                layer(torch.randn(3, 8).requires_grad_(True))
            assert all(a is b for a, b in zip(_tensors(layer, outside).values(), before.values()))
            xg = torch.randn(3, 8).requires_grad_(True)
            layer.block(xg).pow(2).sum().backward()   # a module of the layer, called on its own
            assert xg.grad is not None and not window.fell_back


def test_an_alias_moved_away_from_its_weight_is_not_handed_out_again():
    """The alias cache hands out an alias while it and its weight are the same view of the same memory; an alias
    whose memory someone replaced (``.data =``, as ``Module.to`` does to what a module holds) is made anew."""
    from comfyui_personalvideo.training import inference_tensors

    with torch.inference_mode():
        weight = torch.randn(4, 4)
    first = inference_tensors._alias_of(weight)
    assert inference_tensors._alias_of(weight) is first and first.data_ptr() == weight.data_ptr()
    first.data = torch.zeros(4, 4)
    again = inference_tensors._alias_of(weight)
    assert again is not first and again.data_ptr() == weight.data_ptr() and torch.equal(again, weight)


def test_a_module_added_to_a_layer_after_its_walk_was_kept_is_aliased():
    """A layer's subtree is walked once and kept; a module added under it later has its weights aliased in the
    layer's next call (were it counted as covered without its tables swapped, autograd would refuse its
    inference weight)."""
    layer, outside = _models()
    with torch.inference_mode():
        with gradient_window(layer), layers([layer]):
            layer(torch.randn(3, 8).requires_grad_(True)).sum().backward()   # the walk is kept
        layer.block.append(nn.Linear(8, 8))   # an inference weight under the layer, after the walk
        before = _tensors(layer, outside)
        with gradient_window(layer) as window, layers([layer]):
            xg = torch.randn(3, 8).requires_grad_(True)
            layer(xg).pow(2).sum().backward()
            assert xg.grad is not None and not window.fell_back
    assert all(a is b for a, b in zip(_tensors(layer, outside).values(), before.values()))
    assert layer.block[2].weight.is_inference()


def test_the_walk_kept_for_a_layer_lets_the_layer_go():
    """The kept walk holds its modules weakly: a model dropped by the user is freed, not kept by the window's
    bookkeeping (each layer's walk names the layer itself)."""
    import gc
    import weakref

    layer, outside = _models()
    with torch.inference_mode():
        with gradient_window(layer), layers([layer]):
            layer(torch.randn(3, 8).requires_grad_(True)).sum().backward()
    gone = weakref.ref(layer.block[0])
    gone_layer = weakref.ref(layer)
    del layer
    gc.collect()
    assert gone_layer() is None and gone() is None


class _ReadsHeadWeight(nn.Module):
    """A layer that reads its child's weight without calling the child (as a block reads ``self.norm.weight``)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 8)

    def forward(self, x):
        return torch.nn.functional.linear(x, self.head.weight)


def test_a_child_put_in_place_of_another_after_the_walk_is_aliased_in_the_layer_call():
    """The kept walk is walked again when a module under the layer has other children: a child replaced since,
    whose weight the layer reads without calling it, is aliased (the kept walk would cover the layer and leave
    the new weight to autograd, which refuses an inference tensor)."""
    with torch.inference_mode():
        layer = _ReadsHeadWeight()
    with torch.inference_mode():
        with gradient_window(layer), layers([layer]):
            layer(torch.randn(3, 8).requires_grad_(True)).sum().backward()   # the walk is kept
        old = layer.head   # still alive (held elsewhere): the kept walk's reference to it does not die
        layer.head = nn.Linear(8, 8)   # an inference weight in place of it
        with gradient_window(layer) as window, layers([layer]):
            xg = torch.randn(3, 8).requires_grad_(True)
            layer(xg).sum().backward()
            assert not window.fell_back
    assert torch.allclose(xg.grad, layer.head.weight.sum(0).expand(3, 8))
    assert layer.head.weight.is_inference() and old.weight.is_inference()


class _HoldsLooseTensor(nn.Module):
    """A module computing with an inference tensor no module table holds (as a pack's tensor made in a node)."""

    def __init__(self, loose):
        super().__init__()
        self.linear = nn.Linear(8, 8)
        self.__dict__["loose"] = loose

    def forward(self, x):
        return self.linear(x) * self.loose


def test_the_window_says_when_it_fell_back_to_aliasing_every_operation(monkeypatch, caplog):
    """A tensor no module holds is not aliased by the hooks: autograd refuses it, the window falls back to aliasing
    every operation and says so (the trainer reports it as the slow path, and the log names it once a session); a
    window that needed no fallback says it did not."""
    import logging

    from comfyui_personalvideo.training import inference_tensors
    from comfyui_personalvideo.training.inference_tensors import with_fallback

    monkeypatch.setattr(inference_tensors, "_fallback_told", [False])
    torch.manual_seed(0)
    with torch.inference_mode():
        module = _HoldsLooseTensor(torch.rand(8) + 0.5)
    with torch.inference_mode(), caplog.at_level(logging.WARNING, logger="PersonalVideo"):
        for _ in range(2):
            with gradient_window(module) as window:
                xg = torch.randn(3, 8).requires_grad_(True)
                with_fallback(window, lambda: module(xg).sum()).backward()
                assert window.fell_back
        assert [r.levelname for r in caplog.records if "trains slower" in r.getMessage()] == ["WARNING"]
        with gradient_window(module) as window:
            with_fallback(window, lambda: module.linear(torch.randn(3, 8).requires_grad_(True)).sum()).backward()
            assert not window.fell_back
    expected = (module.linear.weight * module.loose[:, None]).sum(0)
    assert torch.allclose(xg.grad, expected.expand(3, 8), rtol=1e-5, atol=1e-6)


def _calls_with_hooks(monkeypatch):
    """[(module, grad on)] for each module call the window's pre-hook sees from now on."""
    from comfyui_personalvideo.training.inference_tensors import Window

    seen, hook = [], Window.pre_hook

    def counting(self, module, args):
        seen.append((module, torch.is_grad_enabled()))
        return hook(self, module, args)

    monkeypatch.setattr(Window, "pre_hook", counting)
    return seen


def test_a_checkpointed_layer_runs_its_forward_without_the_window_hooks_and_its_recomputation_with_them(monkeypatch):
    """The forward of a checkpointed layer runs without gradient: the window's hooks are off for it (each would
    cost every module call under it for nothing). Its recomputation, with gradient, has them: the module outside
    the layer is aliased by its own call there, with no fallback, and the gradient is the reference's."""
    from comfyui_personalvideo.training.checkpointing import checkpointed

    seen = _calls_with_hooks(monkeypatch)
    layer, outside = _models()
    before = _tensors(layer, outside)
    inside = {id(m) for m in layer.modules() if m is not layer} | {id(outside)}
    x = torch.randn(3, 8)
    with torch.inference_mode():
        with gradient_window(layer) as window, checkpointed([layer]):
            xg = x.clone().requires_grad_(True)
            loss = layer(xg).pow(2).sum()
            forward = [id(m) for m, _ in seen]
            seen.clear()
            loss.backward()
            assert not window.fell_back
    assert id(layer) in forward and not inside & set(forward)   # the layer's own call only
    assert {id(m) for m, grad in seen if grad} == inside           # the recomputation: all of them
    assert torch.allclose(xg.grad, _reference_gradient(layer, outside, x), rtol=1e-5, atol=1e-6)
    assert all(a is b for a, b in zip(_tensors(layer, outside).values(), before.values()))


class _GradientInside(Layer):
    """A layer that turns gradient on for part of its forward whatever the caller's mode."""

    def forward(self, x):
        with torch.enable_grad():
            h = self.block(x)
        return self.head(h + self.outside(h))


def test_a_module_that_turns_gradient_on_inside_a_checkpointed_forward_gets_the_fallback_and_the_right_gradient(
        monkeypatch):
    """With the hooks off in a checkpointed layer's forward, a module that turns gradient on there meets its
    inference weights unaliased: autograd refuses them, the window falls back to aliasing every operation, and the
    pass is made again, with the reference's gradient; the hooks are back afterwards."""
    from comfyui_personalvideo.training import inference_tensors
    from comfyui_personalvideo.training.checkpointing import checkpointed
    from comfyui_personalvideo.training.inference_tensors import with_fallback

    monkeypatch.setattr(inference_tensors, "_fallback_told", [False])   # the session's one warning is left
    seen = _calls_with_hooks(monkeypatch)
    torch.manual_seed(0)
    with torch.inference_mode():
        outside = nn.Linear(8, 8)
        layer = _GradientInside(outside)
    x = torch.randn(3, 8)
    with torch.inference_mode():
        with gradient_window(layer) as window, checkpointed([layer]):
            xg = x.clone().requires_grad_(True)
            with_fallback(window, lambda: layer(xg).pow(2).sum()).backward()
            assert window.fell_back
            seen.clear()
            layer.block(torch.randn(3, 8).requires_grad_(True))
            assert [m for m, _ in seen][:1] == [layer.block]   # the hooks are registered again
    assert torch.allclose(xg.grad, _reference_gradient(layer, outside, x), rtol=1e-5, atol=1e-6)
