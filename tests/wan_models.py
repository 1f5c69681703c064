"""Tiny random Wan models for the tests (tools/random_wan_models.py), and the skip on hosts without core Wan."""
from __future__ import annotations

import pytest
import torch

import host  # noqa: F401  (makes tools/ importable as pv_tools)
from pv_tools.random_wan_models import (empty_wan_latent, has_wan, random_text_cond,  # noqa: F401
                                        save_wan_model, tiny_wan_model, wan_state_dict)

NO_WAN = ("this ComfyUI host has no core Wan (comfy.ldm.wan, ComfyUI 0.3.3x or newer; the default 2024 host "
          "predates Wan): run with COMFYUI_ROOT=<a modern ComfyUI checkout>")


def skip_without_wan():
    if not has_wan():
        pytest.skip(NO_WAN, allow_module_level=True)


def random_wan_adapter(model, seed: int = 1, rank: int = 4, alpha: float = 4.0, std: float = 0.3,
                       name: str = "wan_tester"):
    """An adapter on ``model``'s Wan self-attention targets with random, non-zero up weights."""
    from comfyui_personalvideo.sia import AdapterInfo, SIAAdapter
    from comfyui_personalvideo.sia.families import WAN, discover

    found = discover(model.model.diffusion_model)
    adapter = SIAAdapter.initialise(found.targets, rank=rank, alpha=alpha, seed=seed,
                                    info=AdapterInfo(name=name, base=WAN))
    g = torch.Generator().manual_seed(seed + 100)
    for path in adapter.paths:
        adapter.up[path] = torch.randn(adapter.up[path].shape, generator=g) * std
        adapter.down[path] = adapter.down[path].detach()
    return adapter


def with_shift(model, shift: float):
    """``model`` with core's ModelSamplingSD3 node's shift (the node Wan workflows use to set it)."""
    import nodes

    return nodes.NODE_CLASS_MAPPINGS["ModelSamplingSD3"]().patch(model, shift)[0]


def sample(model, sampler="euler", scheduler="simple", steps=8, cfg=1.5, seed=0, latent=None, sigmas=None,
           callback=None):
    """A run through comfy.sample.sample_custom on a 5-frame 64x64 Wan latent; returns the final latent."""
    import comfy.sample
    import comfy.samplers

    latent = empty_wan_latent()["samples"] if latent is None else latent
    noise = comfy.sample.prepare_noise(latent, seed)
    if sigmas is None:
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)
    return comfy.sample.sample_custom(model, noise, cfg, comfy.samplers.sampler_object(sampler), sigmas,
                                      random_text_cond(1), random_text_cond(2), latent, callback=callback,
                                      disable_pbar=True, seed=seed)
