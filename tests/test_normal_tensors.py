"""Leaving ComfyUI's inference mode keeps the caller's gradient mode: a block or gradient window entered under
``torch.no_grad()`` records nothing for backward, while one entered from a node (inference mode) trains
(``torch.inference_mode(False)`` alone would turn gradients on in both)."""

import torch

from comfyui_personalvideo.training.inference_tensors import gradient_window, normal_tensors

import tiny_models
from autograd_memory import SavedTensorBytes


def test_gradient_mode_is_kept_outside_a_node_and_on_inside_one():
    w = torch.ones(3, requires_grad=True)
    with torch.no_grad(), normal_tensors():
        assert not torch.is_grad_enabled()
        assert (w * 2).grad_fn is None
    with normal_tensors():
        assert torch.is_grad_enabled() and (w * 2).grad_fn is not None
    with torch.inference_mode():
        with normal_tensors():
            t = torch.zeros(2)
            assert torch.is_grad_enabled() and not t.is_inference()   # a node's training block
        with torch.no_grad(), normal_tensors():
            assert torch.is_grad_enabled()   # (inference mode hides any no_grad under it: as before)
    assert torch.is_grad_enabled()


def test_a_gradient_window_opened_under_no_grad_records_nothing():
    with torch.inference_mode():
        model = tiny_models.tiny_sd15_model(seed=0)
    unet = model.model.diffusion_model
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    context = torch.randn(1, 77, tiny_models.context_dim(model))
    steps = torch.tensor([500.0])
    with torch.no_grad(), gradient_window(unet), SavedTensorBytes() as saved:
        out = unet(x, timesteps=steps, context=context)
    assert saved.bytes == 0 and not saved.weight_storages and out.grad_fn is None
    with torch.inference_mode():
        with gradient_window(unet), SavedTensorBytes() as saved:   # a node's gradient step
            out = unet(x, timesteps=steps, context=context)
        assert saved.bytes > 0 and out.grad_fn is not None
