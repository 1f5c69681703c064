"""Adapters with random (non-zero) up weights, so that they change every call they act on: one builder for
the tests (the ``make_adapter`` fixture, the gate recordings) and the benchmarks."""
from __future__ import annotations

import torch


def random_adapter(model, seed: int = 1, rank: int = 4, alpha: float = 4.0, std: float = 0.3, name: str | None = None):
    """An adapter for ``model``'s self-attention targets; ``name`` gives it an AdapterInfo with that name and the
    trigger ``embedding:<name> person``."""
    from comfyui_personalvideo.sia import AdapterInfo, SIAAdapter, discover_targets

    found = discover_targets(model.model.diffusion_model)
    info = AdapterInfo(name=name, trigger=f"embedding:{name} person") if name is not None else None
    adapter = SIAAdapter.initialise(found.targets, rank=rank, alpha=alpha, seed=seed, info=info)
    g = torch.Generator().manual_seed(seed + 100)
    for path in adapter.paths:
        adapter.up[path] = torch.randn(adapter.up[path].shape, generator=g) * std
        adapter.down[path] = adapter.down[path].detach()
    return adapter
