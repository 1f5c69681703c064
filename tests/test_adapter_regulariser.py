"""Stage 2's weight-space regulariser and optimiser, as the trainer and the engine make them: the regulariser
over the adapter's tensors as one flat vector gives the per-tensor sum's value and exactly its gradient, and
the optimiser's fused update (CPU and CUDA; the multi-tensor one on other devices) moves the tensors as torch's
tensor-by-tensor AdamW does."""
import pytest
import torch

from comfyui_personalvideo.training import sia_settings
from comfyui_personalvideo.training.sia_settings import SIATrainSettings, adapter_optimizer, flat_copy, reg_term


def _adapter(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 40), (40, 4), (4, 24), (24, 4), (8, 40), (40, 8)]
    return [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]


def test_the_flat_regulariser_is_the_per_tensor_sum_with_the_same_gradient():
    params = _adapter()
    initial = [p.detach().clone() for p in params]
    start = flat_copy(params)
    with torch.no_grad():
        for i, p in enumerate(params):
            p.add_(0.01 * (i + 1) * torch.randn_like(p))
    reference = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, initial))
    expected = torch.autograd.grad(reference, params)
    value = reg_term(params, start)
    got = torch.autograd.grad(value, params)
    assert torch.allclose(value, reference, rtol=1e-6) and float(value) > 0
    for e, g in zip(expected, got):
        assert torch.equal(e, g)
    assert float(reg_term([], flat_copy([]))) == 0.0
    assert start.data_ptr() not in {p.data_ptr() for p in params}   # a copy: the steps do not move it


@pytest.mark.parametrize("update", ["fused", "foreach"])
def test_the_optimiser_updates_as_torch_adamw_does(update, monkeypatch):
    if update == "foreach":   # what a device without the fused kernel gets
        monkeypatch.setattr(sia_settings, "FUSED_ADAMW_DEVICES", ())
    settings = SIATrainSettings()
    params, reference = _adapter(1), _adapter(1)
    ours = adapter_optimizer(params, settings)
    theirs = torch.optim.AdamW(reference, lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps,
                               weight_decay=settings.weight_decay, foreach=False)
    assert ours.defaults[update] is True and not ours.defaults["fused" if update == "foreach" else "foreach"]
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        for a, b in zip(params, reference):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        ours.step()
        theirs.step()
    for a, b, start in zip(params, reference, _adapter(1)):
        assert not torch.equal(a, start)   # the steps moved it, by as much as torch's AdamW moved its copy
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


def test_the_fused_update_only_where_torch_has_its_kernel():
    settings = SIATrainSettings()
    assert adapter_optimizer(_adapter(), settings).defaults["fused"]                       # the CPU
    elsewhere = adapter_optimizer([torch.nn.Parameter(torch.ones(4, 2, device="meta"))], settings)   # no kernel
    assert elsewhere.defaults["foreach"] and not elsewhere.defaults["fused"]
