"""Gradient checkpointing of the trainer's gradient passes, put in place for one pass and taken out after.

The UNet runs its blocks as ``forward_timestep_embed(block, ...)``, which calls
each layer of a block (ResBlock, SpatialTransformer, Down/Upsample, and the
motion modules AnimateDiff-Evolved inserts into the blocks when the model is
loaded for sampling) through ``layer(...)``.  :func:`checkpointed` gives each
such layer an instance ``forward`` that runs the original under
``torch.utils.checkpoint(use_reentrant=False)``: only the layer's inputs are
kept for backward, everything inside is recomputed during backward.  Because
the regions are found when the pass starts (after the motion modules were
injected), the motion modules are checkpointed too.

Each call hands the layer a fresh shallow copy of any dict argument (ComfyUI's
``transformer_options``) as it was when the layer was first called, so the
recomputation sees the same ``block``/``transformer_index`` entries as the
original pass (the UNet changes them in place as it goes; attention replace
patches are looked up by them).

Recomputation happens during backward, after the model call has returned, so
anything a pack switched on only for the duration of the model call is off by
then. AnimateDiff-Evolved does this with GroupNorm for v1-style motion models
(a frame-aware ``torch.nn.GroupNorm.forward`` and ComfyUI GroupNorm cast
forward, swapped in around each diffusion-model call): each region records
those class attributes when it first runs and its recomputation runs with
them in force again (``context_fn`` of non-reentrant checkpoint), so backward
sees the very functions the forward saw.

The recomputation also makes the same memory-dependent choices as the
forward: the host's split and sub-quadratic attention slice their work by the
free memory at call time, so each region records the free-memory readings of
its forward and replays them when it is recomputed (:mod:`.free_memory_replay`);
and it runs inside the gradient window's aliasing of inference tensors when
the forward did (:mod:`.inference_tensors`).  The late-step gate's on/off state is
recorded when the region's forward ends and pinned during its recomputation
(:func:`comfyui_personalvideo.sia.gate.replayed`): backward may run on another
thread (CUDA's autograd does), where the gate cannot find the sampler, and a
step may make several model calls.  So checkpointing gives the gradients of
exactly the computation the forward made, under every attention backend, on
any thread.

Afterwards every module's ``forward`` is exactly what it was: the instance
attribute the layer had (an object patch) is put back, or removed if it had
none.
"""
from __future__ import annotations

import contextlib
import functools

import torch
import torch.utils.checkpoint

from ..sia import gate
from . import free_memory_replay, inference_tensors

_MISSING = object()


def unet_regions(diffusion_model) -> list:
    """The layers of the UNet's input/middle/output blocks (injected motion modules included)."""
    blocks = list(getattr(diffusion_model, "input_blocks", None) or [])
    middle = getattr(diffusion_model, "middle_block", None)
    if middle is not None:
        blocks.append(middle)
    blocks += list(getattr(diffusion_model, "output_blocks", None) or [])
    regions = []
    for block in blocks:
        regions += list(block.children()) if isinstance(block, torch.nn.Sequential) else [block]
    return regions


def decoder_regions(first_stage_model) -> list:
    """The middle and up-sampling blocks of an SD-layout VAE decoder (empty for other decoders)."""
    decoder = getattr(first_stage_model, "decoder", None)
    mid, up = getattr(decoder, "mid", None), getattr(decoder, "up", None)
    if mid is None or up is None:
        return []
    regions = [m for m in (getattr(mid, n, None) for n in ("block_1", "attn_1", "block_2")) if m is not None]
    for level in up:
        regions += list(getattr(level, "block", [])) + list(getattr(level, "attn", []))
        if isinstance(getattr(level, "upsample", None), torch.nn.Module):
            regions.append(level.upsample)
    return regions


def regions_of(*roots) -> list:
    """Checkpoint regions of every root that is a UNet or an SD-layout VAE (others add none)."""
    regions = []
    for root in roots:
        if root is None:
            continue
        regions += unet_regions(root) if hasattr(root, "input_blocks") else decoder_regions(root)
    return regions


@functools.lru_cache(maxsize=1)
def _swappable_globals() -> tuple:
    """(owner, attribute) pairs that packs swap only while the diffusion model runs."""
    pairs = [(torch.nn.GroupNorm, "forward")]
    try:
        import comfy.ops
    except ImportError:
        return tuple(pairs)
    for family in ("disable_weight_init", "manual_cast"):
        cls = getattr(getattr(comfy.ops, family, None), "GroupNorm", None)
        if cls is not None:
            pairs += [(cls, "forward"), (cls, "forward_comfy_cast_weights")]
    return tuple(pairs)


def _snapshot_globals() -> list:
    return [(owner, name, owner.__dict__.get(name, _MISSING)) for owner, name in _swappable_globals()]


def _put(owner, name, value) -> None:
    if value is _MISSING:
        if name in owner.__dict__:
            delattr(owner, name)
    elif owner.__dict__.get(name, _MISSING) is not value:
        setattr(owner, name, value)


@contextlib.contextmanager
def _globals_as(snapshot):
    current = [(owner, name, owner.__dict__.get(name, _MISSING)) for owner, name, _ in snapshot]
    try:
        for owner, name, value in snapshot:
            _put(owner, name, value)
        yield
    finally:
        for owner, name, value in current:
            _put(owner, name, value)


@contextlib.contextmanager
def _forward_recording(readings, gates):
    """A region's forward: its free-memory readings are recorded, and the gates' states when it ends."""
    with free_memory_replay.recording(readings):
        yield
    gates[:] = gate.states()


@contextlib.contextmanager
def _recomputing(snapshot, readings, aliasing, gates):
    """What a region's recomputation runs under: the forward's globals, free-memory readings, gate states
    and aliasing."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_globals_as(snapshot))
        stack.enter_context(free_memory_replay.replaying(readings))
        stack.enter_context(gate.replayed(gates))
        if aliasing:
            stack.enter_context(inference_tensors.aliasing())
        yield


def _class_forward(module, *args, **kwargs):
    return type(module).forward(module, *args, **kwargs)


def _copy_dict(value):
    """Dict arguments (transformer_options) are copied on the way in and again for the recomputation, so
    what the forward writes into them does not leak between the two runs."""
    return dict(value) if isinstance(value, dict) else value


def _checkpointing_forward(inner):
    def forward(*args, **kwargs):
        if not torch.is_grad_enabled():
            return inner(*args, **kwargs)
        keys = tuple(kwargs)
        flat = [_copy_dict(a) for a in args] + [_copy_dict(kwargs[k]) for k in keys]
        n = len(args)

        def run(*values):
            values = [_copy_dict(v) for v in values]
            return inner(*values[:n], **dict(zip(keys, values[n:])))

        snapshot = _snapshot_globals()
        aliasing = inference_tensors.active()

        def contexts():
            readings, gates = [], []
            return _forward_recording(readings, gates), _recomputing(snapshot, readings, aliasing, gates)

        # tensors go in as direct arguments, so checkpoint keeps (and accounts for) exactly the inputs
        return torch.utils.checkpoint.checkpoint(run, *flat, use_reentrant=False, context_fn=contexts)

    forward._pv_checkpointing = True
    return forward


@contextlib.contextmanager
def checkpointed(regions, enabled: bool = True):
    """Within the block each region's forward runs under gradient checkpointing (when grad is on)."""
    wrapped = []
    try:
        if enabled:
            seen = set()
            for module in regions:
                if id(module) in seen or getattr(module.forward, "_pv_checkpointing", False):
                    continue
                seen.add(id(module))
                original = module.__dict__.get("forward", _MISSING)
                # the class's forward is looked up at each call, as module(...) does: packs swap it at times
                inner = original if original is not _MISSING else functools.partial(_class_forward, module)
                module.forward = _checkpointing_forward(inner)
                wrapped.append((module, original))
        yield len(wrapped)
    finally:
        for module, original in reversed(wrapped):
            if original is _MISSING:
                del module.forward
            else:
                module.forward = original
