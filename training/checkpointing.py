"""Gradient checkpointing of the trainer's gradient passes, put in place for one pass and taken out after.

The UNet runs its blocks as ``forward_timestep_embed(block, ...)``, which calls
each layer of a block (ResBlock, SpatialTransformer, Down/Upsample, and the
motion modules AnimateDiff-Evolved inserts into the blocks when the model is
loaded for sampling) through ``layer(...)``.  :func:`checkpointed` gives each
such layer an instance ``forward`` that runs the original without gradient
and keeps only the layer's tensor inputs (:class:`_Recomputed`, a small autograd
Function); backward runs the layer again with gradient, under the forward's
autocast state, and backpropagates through that recomputation, which also
reaches the trainable weights used inside (the adapter's). An empty tensor that
requires grad goes in with the inputs, so a layer whose inputs need no gradient
still passes its adapter's gradients on; a layer that needs no gradient at all
(no input needs one and it holds nothing trainable: :func:`holds_trainable`, the
UNet's first convolution and ResBlock) simply runs, and is not recomputed. The bookkeeping is
one Python call per layer and pass, not per operation. Random number state is
not replayed: ComfyUI's layers draw none in eval mode (dropout 0).  Because
the regions are found when the pass starts (after the motion modules were
injected), the motion modules are checkpointed too.

Each call hands the layer a fresh shallow copy of any dict argument (ComfyUI's
``transformer_options``) as it was when the layer was first called, so the
recomputation sees the same ``block``/``transformer_index`` entries as the
original pass (the UNet changes them in place as it goes; attention replace
patches are looked up by them). A list argument is the caller's own in the
forward (the Wan VAE decoder's causal feature cache and running index, which
the layer reads and advances for the next layer), and a copy of it as the
forward found it in each recomputation.

Recomputation happens during backward, after the model call has returned, so
anything a pack switched on only for the duration of the model call is off by
then. AnimateDiff-Evolved does this with GroupNorm for v1-style motion models
(a frame-aware ``torch.nn.GroupNorm.forward`` and ComfyUI GroupNorm cast
forward, swapped in around each diffusion-model call): each region records
those class attributes when it first runs and its recomputation runs with
them in force again, so backward sees the very functions the forward saw.

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
import threading

import torch
import torch.utils.checkpoint

from ..sia import families, gate
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


def wan_decoder_regions(first_stage_model) -> list:
    """The middle and up-sampling layers of a core Wan VAE decoder (Wan 2.1's and Wan 2.2's), each called as
    ``layer(x, feat_cache, feat_idx, ...)``: the causal feature cache, a list the layer reads and writes, and the
    running index into it (see :func:`_checkpointing_forward` for how a recomputation gets the cache it read)."""
    decoder = getattr(first_stage_model, "decoder", None)
    return [m for part in ("middle", "upsamples") for m in getattr(decoder, part, ())]


def _is_wan_decoder(first_stage_model) -> bool:
    decoder = getattr(first_stage_model, "decoder", None)
    return isinstance(getattr(decoder, "middle", None), torch.nn.Module) and \
        isinstance(getattr(decoder, "upsamples", None), torch.nn.Module)


def wan_regions(diffusion_model) -> list:
    """The attention blocks of a core Wan diffusion model (each called as ``block(x, e=..., freqs=...,
    context=..., transformer_options=...)``); callers have told the family (:func:`regions_of`)."""
    return list(diffusion_model.blocks)


def t5_regions(text_encoder) -> list:
    """The layers of a core T5 / umT5 encoder (``comfy.text_encoders.t5.T5``: Wan's text encoder), each called
    as ``block(x, mask, past_bias, optimized_attention)``."""
    return list(text_encoder.encoder.block)


def regions_of(*roots) -> list:
    """Checkpoint regions of every root that is a UNet, a Wan diffusion model, an SD-layout VAE or a Wan VAE
    (others add none)."""
    regions = []
    for root in roots:
        if root is None:
            continue
        if hasattr(root, "input_blocks"):
            regions += unet_regions(root)
        elif families.family_of(root) == families.WAN:
            regions += wan_regions(root)
        elif _is_wan_decoder(root):
            regions += wan_decoder_regions(root)
        else:
            regions += decoder_regions(root)
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


def _globals_differ(snapshot) -> bool:
    return any(owner.__dict__.get(name, _MISSING) is not value for owner, name, value in snapshot)


@contextlib.contextmanager
def _recomputing(snapshot, readings, aliasing, gates):
    """What a region's recomputation runs under: the forward's globals, free-memory readings, gate states
    and aliasing (each entered only where it changes something: the globals when they differ from the
    forward's, the readings when the forward read any, the gates when there are any)."""
    with contextlib.ExitStack() as stack:
        if _globals_differ(snapshot):
            stack.enter_context(_globals_as(snapshot))
        if readings:
            stack.enter_context(free_memory_replay.replaying(readings))
        if gates:
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


_local = threading.local()   # .recomputing: a region's recomputation runs on this thread now


def _autocast_state(device_type: str):
    """(enabled, dtype) of autocast for ``device_type`` now (both torch generations' functions)."""
    if device_type not in ("cpu", "cuda"):
        return False, None       # the meta device (estimates): no autocast there
    try:
        return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError):   # torch 2.4: per-device functions
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()


def _autocast(device_type: str, state):
    """Autocast as ``state`` (the forward's) for a recomputation: nothing to enter when it is already so."""
    enabled, dtype = state
    if dtype is None or _autocast_state(device_type) == state:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype, enabled=enabled)


class _Region:
    """What one checkpointed call needs to run again: the call itself, the forward's globals, free-memory
    readings, gate states and aliasing, and its autocast state."""

    __slots__ = ("run", "module", "snapshot", "readings", "gates", "per_operation", "device_type", "autocast", "multiple")

    def __init__(self, run, module, device_type):
        self.run = run
        self.module = module
        self.snapshot = _snapshot_globals()
        self.readings, self.gates = [], []
        self.per_operation = inference_tensors.active()
        self.device_type = device_type
        self.autocast = _autocast_state(device_type)
        self.multiple = False


class _Recomputed(torch.autograd.Function):
    """A region run without gradient in the forward, keeping only its tensor inputs, and run again with
    gradient in backward, whose own backward then gives the inputs' and the trainable weights' gradients (the
    weights a region uses, such as the adapter's, are reached by that inner backward directly)."""

    @staticmethod
    def forward(ctx, region, _requires_grad, *tensors):
        ctx.region = region
        ctx.save_for_backward(*[inference_tensors.normal_alias(t) if t.is_inference() else t for t in tensors])
        with free_memory_replay.recording(region.readings), inference_tensors.hooks_off():
            out = region.run(*tensors)
        region.gates[:] = gate.states()   # as they are when the forward ends
        if isinstance(out, tuple):
            region.multiple = True
            return tuple(o.clone() if any(o is t for t in tensors) else o for o in out)
        return out.clone() if any(out is t for t in tensors) else out

    @staticmethod
    def backward(ctx, *grads):
        region = ctx.region
        needs = ctx.needs_input_grad[2:]
        inputs = [t.detach().requires_grad_(need) for t, need in zip(ctx.saved_tensors, needs)]
        per_operation = region.per_operation or not inference_tensors.window_open()
        measure = _MEASURING[-1] if _MEASURING else None
        _local.recomputing = getattr(_local, "recomputing", 0) + 1
        try:
            before = measure[0]() if measure else 0
            with torch.enable_grad(), _recomputing(region.snapshot, region.readings, per_operation, region.gates), \
                    _autocast(region.device_type, region.autocast), \
                    inference_tensors.module_aliased(region.module):
                out = region.run(*inputs)
            if measure:
                measure[1].append((region.module, measure[0]() - before))
        finally:
            _local.recomputing -= 1
        outs = out if region.multiple else (out,)
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and torch.is_tensor(o) and o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None, *[t.grad if need else None for t, need in zip(inputs, needs)])


def recomputing() -> bool:
    """Whether a checkpointed layer is being recomputed on this thread now (its tensors live only until its
    backward is done: memory meters that count what is held from forward to backward leave them out)."""
    return bool(getattr(_local, "recomputing", 0))


_REQUIRES_GRAD = []
_MEASURING = []   # (allocated(), [(layer, bytes)]) while a pass is measured (:mod:`.checkpoint_choice`)


@contextlib.contextmanager
def measuring(allocated):
    """Within the block each layer's recomputation records ``(layer, bytes)``: the bytes it holds once
    recomputed (read with ``allocated()`` before and after it), what the layer keeps for backward when not
    checkpointed; a layer called more than once in the pass has an entry per call."""
    sizes = []
    _MEASURING.append((allocated, sizes))
    try:
        yield sizes
    finally:
        _MEASURING.remove((allocated, sizes))


def _requires_grad_token():
    """An empty tensor that requires grad, given to every region so its output requires grad even when none
    of its inputs does (the first layers: only the adapter's weights inside them are trained)."""
    if not _REQUIRES_GRAD:
        with torch.inference_mode(False):
            _REQUIRES_GRAD.append(torch.empty(0, requires_grad=True))
    return _REQUIRES_GRAD[0]


# layers that add their residual into their input tensor in place (``x += ...``): the region's forward gets a
# copy of that input, so the input kept for the recomputation stays as it was (and, in backward, the input whose
# gradient is taken is not modified in place)
_ADDS_INTO_INPUT = ("T5Block",)


def holds_trainable(module) -> bool:
    """Whether a backward may need to run through ``module`` even when none of its inputs requires grad: it
    holds a normal parameter that requires grad, or a layer with a forward of its own (an object patch, such
    as the adapter's q/k/v forwards, which read trainable tensors no module holds). A layer that does neither
    (the UNet's first convolution and ResBlock, before any adapter) gives an output that needs no gradient
    when its inputs need none."""
    for m in module.modules():
        own = m.__dict__.get("forward")
        if own is not None and not getattr(own, "_pv_checkpointing", False):
            return True
        if any(p.requires_grad and not p.is_inference() for p in m._parameters.values() if p is not None):
            return True   # (a model loaded in a node has inference weights: the window reads them without grad)
    return False


def _checkpointing_forward(module, inner):
    adds_into_input = type(module).__name__ in _ADDS_INTO_INPUT

    def forward(*args, **kwargs):
        if not torch.is_grad_enabled() or getattr(_local, "recomputing", 0):
            return inner(*args, **kwargs)
        keys = tuple(kwargs)
        flat = [_copy_dict(a) for a in args] + [_copy_dict(kwargs[k]) for k in keys]
        places = [i for i, v in enumerate(flat) if isinstance(v, torch.Tensor)]
        if not places or not any(flat[i].requires_grad for i in places) and not holds_trainable(module):
            # nothing in this call can need a gradient: it runs as it is, recording nothing, and is never
            # recomputed (before the first adapter layer no backward reaches here); asked only of the layers
            # whose inputs need no gradient (the first few of a pass), as they are at the call
            return inner(*args, **kwargs)
        n = len(args)
        # list arguments (the Wan VAE decoder's feature cache and its running index) are the caller's, read and
        # written by the layer: the forward gets them as they are, and each recomputation a copy of them as the
        # forward found them, so it reads what the forward read and its writes go nowhere
        lists = {i: list(v) for i, v in enumerate(flat) if type(v) is list}

        def run(*tensors):
            values = [_copy_dict(v) for v in flat]
            for i, t in zip(places, tensors):
                values[i] = t
            if getattr(_local, "recomputing", 0):
                for i, found in lists.items():
                    values[i] = list(found)
            if adds_into_input and torch.is_tensor(values[0]):
                values[0] = values[0].clone()
            return inner(*values[:n], **dict(zip(keys, values[n:])))

        tensors = [flat[i] for i in places]
        for i in places:   # the tensors live on in the node's saved tensors only, freed once its backward has run
            flat[i] = None
        region = _Region(run, module, tensors[0].device.type)
        return _Recomputed.apply(region, _requires_grad_token(), *tensors)

    forward._pv_checkpointing = True
    return forward


@contextlib.contextmanager
def checkpointed(regions, enabled: bool = True, spared=()):
    """Within the block each region's forward runs under gradient checkpointing (when grad is on), except the
    regions in ``spared``, which keep their activations for backward as without checkpointing (the layers
    :mod:`.checkpoint_choice` found room for)."""
    wrapped = []
    try:
        if enabled:
            seen = {id(m) for m in spared}
            for module in regions:
                if id(module) in seen or getattr(module.forward, "_pv_checkpointing", False):
                    continue
                seen.add(id(module))
                original = module.__dict__.get("forward", _MISSING)
                # the class's forward is looked up at each call, as module(...) does: packs swap it at times
                inner = original if original is not _MISSING else functools.partial(_class_forward, module)
                module.forward = _checkpointing_forward(module, inner)
                wrapped.append((module, original))
        # the regions that keep their activations run forward with gradient: each such call aliases its whole
        # layer at once (the checkpointed ones run forward without gradient and alias in their recomputation)
        checkpointed_ids = {id(m) for m, _ in wrapped}
        with inference_tensors.layers([m for m in regions if id(m) not in checkpointed_ids]), \
                free_memory_replay.installed():
            yield len(wrapped)
    finally:
        for module, original in reversed(wrapped):
            if original is _MISSING:
                del module.forward
            else:
                module.forward = original
