"""Attaching an adapter to a clone of a ComfyUI MODEL (ModelPatcher).

The user's MODEL is never touched: the adapter goes on a clone, as object
patches on the ``forward`` of each target layer (these compose with LoRA
weight patches from the stock LoraLoader, which object-patching the whole
Linear would drop) plus an ``attn1`` patch that keeps the late-step gate up to
date.  ComfyUI applies the object patches only while the clone is loaded for
sampling and restores the original forwards afterwards.  Nothing outside the
clone is changed: no host function is wrapped.
"""
from __future__ import annotations

import logging

from . import gate as late_gate
from .errors import SIAError
from .lora import CastWeights, lora_delta
from .targets import discover_targets

log = logging.getLogger("PersonalVideo")

STRENGTH_RANGE = (-2.0, 2.0)


def check_settings(strength: float, start_percent: float, end_percent: float = 1.0) -> None:
    lo, hi = STRENGTH_RANGE
    if not isinstance(strength, (int, float)) or not lo <= float(strength) <= hi:
        raise SIAError(f"strength must be between {lo} and {hi} (got {strength!r}); 1.0 is the trained strength.")
    if not isinstance(start_percent, (int, float)) or not 0.0 <= float(start_percent) <= 1.0:
        raise SIAError(
            f"start_percent must be between 0.0 and 1.0 (got {start_percent!r}); "
            "0.75 applies the adapter in the last quarter of the noise schedule, 0 in every step."
        )
    if not isinstance(end_percent, (int, float)) or not 0.0 <= float(end_percent) <= 1.0:
        raise SIAError(f"end_percent must be between 0.0 and 1.0 (got {end_percent!r}); "
                       "1.0 keeps the adapter on to the last step.")
    if float(start_percent) > float(end_percent):
        raise SIAError(f"start_percent ({start_percent}) is after end_percent ({end_percent}); "
                       "set start_percent to at most end_percent (e.g. 0.75 and 1.0).")


def _object_patch_key(path: str) -> str:
    return f"diffusion_model.{path}.forward"


def _make_forward(module, base_forward, weights: CastWeights, scale: float, state):
    linear_forward = type(module).forward

    def forward(x, *args, **kwargs):
        out = base_forward(x, *args, **kwargs) if base_forward is not None else linear_forward(module, x, *args, **kwargs)
        if state.active:
            down, up = weights.get(x)
            out = out + lora_delta(x, down, up, scale)
        return out

    return forward


def apply_sia(model, adapter, strength: float = 1.0, start_percent: float = 0.75, end_percent: float = 1.0):
    """A clone of ``model`` with ``adapter`` on its target layers, gated to the steps whose noise level lies in
    [start_percent, end_percent] of the model's schedule (:mod:`.gate`).

    Returns ``(patched_clone, discovery, gate_state)``.  Every check runs before
    the clone is made: on an error nothing is patched.  At strength 0 the clone
    carries no patch at all.
    """
    check_settings(strength, start_percent, end_percent)
    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if diffusion_model is None:
        raise SIAError("The MODEL input is not a diffusion model (no UNet found); connect an SD1.5 MODEL.")
    discovery = discover_targets(diffusion_model)
    adapter.check_against(discovery)

    patched = model.clone()
    state, observe_step = late_gate.make_gate(start_percent, end_percent, patched.model)
    scale = adapter.scale(strength)
    if scale != 0.0:
        patched.set_model_attn1_patch(observe_step)
        for target in discovery.targets:
            key = _object_patch_key(target.path)
            base = patched.object_patches.get(key)  # another adapter already on this clone: chain it
            weights = CastWeights(adapter.down[target.path], adapter.up[target.path])
            patched.add_object_patch(key, _make_forward(target.module, base, weights, scale, state))
    log.info("[PersonalVideo] SIA %s: %s; strength %.2f, noise schedule %.0f%%-%.0f%%",
             adapter.info.name or adapter.source, discovery.summary(), strength, start_percent * 100,
             end_percent * 100)
    return patched, discovery, state
