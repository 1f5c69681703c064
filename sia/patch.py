"""Attaching an adapter to a clone of a ComfyUI MODEL (ModelPatcher).

The user's MODEL is never touched: the adapter goes on a clone, as object
patches on the ``forward`` of each target layer (SD1.5: :mod:`.targets`; Wan:
:mod:`.wan_targets`, the gate then updated by a model wrapper, :mod:`.wan_gate`) (these compose with LoRA
weight patches from the stock LoraLoader, which object-patching the whole
Linear would drop) plus an ``attn1`` patch that keeps the late-step gate up to
date.  ComfyUI applies the object patches only while the clone is loaded for
sampling and restores the original forwards afterwards.  Nothing outside the
clone is changed: no host function is wrapped.

With a mask the adapter acts in a region only (:mod:`.regional`): the same
q/k/v forwards, switched on per region, plus an object patch on each block's
``attn1`` forward that blends the regions' attention outputs (and, where another
node replaces a block's attention, the deltas weighted per token).
"""
from __future__ import annotations

import logging

import torch.nn.functional as F

from . import families
from . import gate as late_gate
from . import naming
from .errors import SIAError
from .lora import CastWeights, add_lora_delta, lora_delta, merged_weight
from .regional import Region, add_region
from .token_mask import TokenMask, as_mask_frames
from .wan_gate import add_wan_gate

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


def _check_family(adapter, family: str, diffusion_model) -> None:
    base = adapter.info.base
    if base != family:
        raise SIAError(
            f"SIA adapter {adapter.info.name or adapter.source} was made for {families.LABELS.get(base, base)} "
            f"models (its file says base '{base}'), but this MODEL is {families.describe(diffusion_model)}. "
            "An identity adapter only fits the model family it was trained on: connect the matching MODEL or "
            "load an adapter trained on this one.")


def _object_patch_key(path: str) -> str:
    return f"diffusion_model.{path}.forward"


def _make_forward(module, base_forward, weights: CastWeights, scale: float, delta_weight):
    """The projection's forward with the adapter's delta added as ``delta_weight(x)`` says: None (not at all),
    1.0 (whole) or a weight per token."""
    linear_forward = type(module).forward

    def forward(x, *args, **kwargs):
        weight = delta_weight(x)
        if base_forward is None and not args and not kwargs and isinstance(weight, float) and weight == 1.0:
            down, up = weights.get(x)
            merged = merged_weight(module, x, down, up, scale, weights.trainable)
            if merged is not None:   # the layer's product and the delta in one
                return F.linear(x, merged, module.bias)
        out = base_forward(x, *args, **kwargs) if base_forward is not None else linear_forward(module, x, *args, **kwargs)
        if weight is not None:
            down, up = weights.get(x)
            if isinstance(weight, float) and weight == 1.0:
                out = add_lora_delta(out, x, down, up, scale)
            else:
                delta = lora_delta(x, down, up, scale)
                out = out + (delta if isinstance(weight, float) else delta * weight)
        return out

    return forward


def _whole(state):
    return lambda x: 1.0 if state.active else None


def _attention_path(target_path: str) -> str:
    return target_path.rsplit(".", 1)[0]   # "...transformer_blocks.0.attn1.to_q" -> "...attn1"


def _add_region(patched, diffusion_model, discovery, adapter, scale: float, state, mask) -> None:
    """The adapter on ``patched`` inside ``mask`` only (:mod:`.regional`): its q/k/v deltas switched on only
    while the attention of its region is computed, and each block's attn1 forward blending the regions."""
    token_mask = TokenMask(mask)
    region = Region(state, token_mask)
    patched.set_model_attn1_patch(token_mask.make_attn1_patch())
    for target in discovery.targets:
        key = _object_patch_key(target.path)
        weights = CastWeights(adapter.down[target.path], adapter.up[target.path])
        block = naming.block_of(target.path)
        patched.add_object_patch(key, _make_forward(target.module, patched.object_patches.get(key), weights, scale,
                                                    lambda x, block=block: region.delta_weight(x, block)))
    for path in dict.fromkeys(_attention_path(t.path) for t in discovery.targets):
        key = _object_patch_key(path)
        module = diffusion_model.get_submodule(path)
        patched.add_object_patch(key, add_region(patched.object_patches.get(key), module, region))


def apply_sia(model, adapter, strength: float = 1.0, start_percent: float = 0.75, end_percent: float = 1.0,
              mask=None):
    """A clone of ``model`` with ``adapter`` on its target layers, gated to the steps whose noise level lies in
    [start_percent, end_percent] of the model's schedule (:mod:`.gate`).

    With a ``mask`` (a MASK ``[H, W]`` or ``[frames, H, W]``) the adapter acts only on the tokens inside it,
    at every resolution of the UNet (:mod:`.regional`); several masked adapters stack on one MODEL, each in
    its own region.  Without one the adapter acts on every token.

    Returns ``(patched_clone, discovery, gate_state)``.  Every check runs before
    the clone is made: on an error nothing is patched.  At strength 0 the clone
    carries no patch at all.
    """
    check_settings(strength, start_percent, end_percent)
    if mask is not None:
        mask = as_mask_frames(mask)
    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if diffusion_model is None:
        raise SIAError("The MODEL input is not a diffusion model (no UNet found); connect an SD1.5 MODEL.")
    family = families.family_of(diffusion_model)
    _check_family(adapter, family, diffusion_model)
    if family == families.WAN and mask is not None:
        raise SIAError("The mask input works on SD1.5 / AnimateDiff models only so far; on Wan the adapter acts "
                       "on the whole video. Disconnect the mask.")
    discovery = families.discover(diffusion_model)
    adapter.check_against(discovery)

    patched = model.clone()
    state, observe_step = late_gate.make_gate(start_percent, end_percent, patched.model)
    scale = adapter.scale(strength)
    if scale != 0.0:
        if family == families.WAN:
            add_wan_gate(patched, state)       # Wan blocks call no attn1 patch: a model wrapper updates the gate
        else:
            patched.set_model_attn1_patch(observe_step)
        if mask is not None:
            _add_region(patched, diffusion_model, discovery, adapter, scale, state, mask)
        else:
            for target in discovery.targets:
                key = _object_patch_key(target.path)
                base = patched.object_patches.get(key)  # another adapter already on this clone: chain it
                weights = CastWeights(adapter.down[target.path], adapter.up[target.path])
                patched.add_object_patch(key, _make_forward(target.module, base, weights, scale, _whole(state)))
    where = "" if mask is None else f", inside a mask of {mask.shape[0]} frame(s) {mask.shape[1]}x{mask.shape[2]}"
    log.info("[PersonalVideo] SIA %s: %s; strength %.2f, noise schedule %.0f%%-%.0f%%%s",
             adapter.info.name or adapter.source, discovery.summary(), strength, start_percent * 100,
             end_percent * 100, where)
    return patched, discovery, state
