"""The model family of a ComfyUI MODEL, and where the adapter goes in each.

Two families:

- ``sd15``: SD1.5-family UNets (with or without an AnimateDiff motion model); targets in :mod:`.targets`
  (``attn1`` q/k/v of every spatial transformer block), files in :mod:`.naming`.
- ``wan``: ComfyUI core's Wan 2.1 / 2.2 diffusion models (``comfy.ldm.wan.model.WanModel`` and its
  subclasses); targets in :mod:`.wan_targets` (``self_attn`` q/k/v of every ``WanAttentionBlock``), files in
  :mod:`.wan_keys`.

The family is read from the diffusion model's class: a host without Wan (the
March 2024 tree) has only ``sd15``.
"""
from __future__ import annotations

SD15 = "sd15"
WAN = "wan"
FAMILIES = (SD15, WAN)
LABELS = {SD15: "SD1.5 / AnimateDiff", WAN: "Wan 2.1 / 2.2"}


def _wan_model_class():
    try:
        from comfy.ldm.wan.model import WanModel
    except ImportError:   # a host without core Wan
        return None
    return WanModel


def family_of(diffusion_model) -> str:
    """``wan`` for core's Wan diffusion models, ``sd15`` for anything else (checked further by discovery)."""
    wan = _wan_model_class()
    if wan is not None and isinstance(diffusion_model, wan):
        return WAN
    return SD15


def discover(diffusion_model):
    """The adapter's targets in ``diffusion_model``, for its family."""
    if family_of(diffusion_model) == WAN:
        from .wan_targets import discover_wan_targets

        return discover_wan_targets(diffusion_model)
    from .targets import discover_targets

    return discover_targets(diffusion_model)


def describe(diffusion_model) -> str:
    """The family (and for Wan the variant) of a diffusion model, for messages."""
    if family_of(diffusion_model) == WAN:
        from .wan_variants import variant_of_model

        return variant_of_model(diffusion_model)
    return LABELS[SD15]
