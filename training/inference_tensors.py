"""Backward through ComfyUI's models inside a node, without copying them or touching them.

Every node runs under ``torch.inference_mode()``: the weights of models loaded
there are *inference tensors*, which autograd refuses to save for backward.
Inside :func:`gradient_window`, each module called with gradient on reads,
while it runs, normal tensors over the very same memory (zero-copy aliases,
``Tensor.set_`` on the same storage) in place of its own inference weights and
buffers and those of its direct children (a parent reading ``self.norm.weight``
or ``self.position_embedding.weight``): a global module forward pre-hook (one
registration per window, whatever the model's size) puts the aliases in the
module's parameter and buffer tables, and a global forward hook puts the very
tensors it had back as the call returns (the window's end puts back whatever an
error left). So between module calls the models are exactly what they were,
and whatever ComfyUI's memory manager does with a model (loading, offloading,
casting weights layer by layer in low-VRAM mode, patching) is never undone
behind its back: the aliases are made from the tensors the module holds at the
call (an alias is kept for the window while its tensor is the same object over
the same memory), there is no copy of any weight, and the cost is two hooks per
module call rather than work on every torch operation.

A model's layers (its checkpoint regions, named by :func:`layers`) go one step
further: a layer called with gradient swaps aliases in for every module under
it at once, for the length of its call, and the calls under it then find
nothing to do (one walk over the layer's tables instead of a swap in and out at
each of its module calls). A module outside the layer that it calls (another
pack's attention patch with weights of its own) is still aliased by its own
call.

Where a torch operation gets an inference tensor no module of the roots holds
(another model's weights, tensors a pack computes inside a node), the window
falls back to aliasing every operation's arguments (:func:`aliasing`, a
``TorchFunctionMode``): :func:`saved_an_inference_tensor` tells that failure
apart, and :meth:`Window.per_operation` switches the fallback on for the rest
of the window. Only reading goes through an alias: an in-place operation on an
inference tensor keeps it (and fails as torch makes it fail), so nothing can
write into a user's weights through the window.

The window also works around in-place residual adds that break backward:
- 2024 ComfyUI ``BasicTransformerBlock`` does ``x += attn(norm(x))``: the
  pre-hook hands ``norm1/norm2/norm3`` a clone of ``x``;
- ``CLIPLayer`` (both hosts) does the same around ``layer_norm1/layer_norm2``;
- core's T5 / umT5 layers (``T5LayerSelfAttention``, ``T5LayerFF``: Wan's text encoder) do the same around
  their ``layer_norm``.
This only adds a copy of an activation; values are unchanged; the hooks are
removed when the window ends.

Recomputation under gradient checkpointing runs during backward, where torch
gives no mode to the operations; while the window is open a recomputation
aliases its whole layer (:func:`module_aliased`) and the module hooks act on
whatever else it calls, and :mod:`.checkpointing` enters the per-operation aliasing for
a recomputation that runs outside an open window or whose forward ran under it
(:func:`needs_per_operation` tells which). The forward of a checkpointed layer, which runs without gradient,
runs with the window's hooks unregistered (:func:`hooks_off`): they have nothing to do there.
"""
from __future__ import annotations

import contextlib
import logging
import weakref

import torch
from torch.nn.modules import module as module_hooks
from torch.overrides import TorchFunctionMode

log = logging.getLogger("PersonalVideo")
_NORMS = {"BasicTransformerBlock": ("norm1", "norm2", "norm3"), "CLIPLayer": ("layer_norm1", "layer_norm2"),
          "T5LayerSelfAttention": ("layer_norm",), "T5LayerFF": ("layer_norm",)}


def _clone_input(module, args):
    if args and torch.is_tensor(args[0]):
        return (args[0].clone(),) + tuple(args[1:])
    return None


@contextlib.contextmanager
def normal_tensors():
    """The pack's one way out of ComfyUI's inference mode: within the block, new tensors are normal tensors
    (autograd can record them, optimisers can update them in place) even inside a node. Every place that
    makes trainable or trained tensors, or copies tensors made in inference mode, goes through here.

    Gradient mode: coming from inference mode (a node) it is on, as training needs; otherwise it stays what it
    was. (``torch.inference_mode(False)`` alone turns it on in any case, so a block entered under
    ``torch.no_grad()`` would record every operation for a backward nobody runs.)"""
    grad = torch.is_inference_mode_enabled() or torch.is_grad_enabled()
    with torch.inference_mode(False), torch.set_grad_enabled(grad):
        yield


def normal_alias(t: torch.Tensor) -> torch.Tensor:
    """A normal (non-inference) tensor over the same memory as ``t``: no copy."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter):   # tensor subclasses (quantised weights): a copy
        with normal_tensors():
            return t.detach().clone()
    alias = torch.empty((0,), dtype=t.dtype, device=t.device)   # callers run outside inference mode
    alias.set_(t.untyped_storage(), t.storage_offset(), t.size(), t.stride())
    alias._pv_weight_alias = True   # for memory accounting: this is a weight's (or an input's) own memory
    return alias


def _aliased(value):
    if isinstance(value, torch.Tensor):
        return normal_alias(value) if value.is_inference() else value
    if isinstance(value, (list, tuple)) and value:
        items = [_aliased(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict) and value:
        return {k: _aliased(v) for k, v in value.items()}
    return value


def _writes_first_argument(func) -> bool:
    name = getattr(func, "__name__", "")
    return name.endswith("_") and not name.endswith("__") or name in ("__setitem__",) or \
        (name.startswith("__i") and name.endswith("__"))


class _AliasInferenceArguments(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            if _writes_first_argument(func) and args:
                args = (args[0],) + tuple(_aliased(list(args[1:])))
            else:
                args = _aliased(args)
            kwargs = _aliased(kwargs)
        return func(*args, **kwargs)


_depth = [0]         # per-operation aliasing entered now (this thread of control)
_windows = []        # windows open now (innermost last)


def active() -> bool:
    """Whether per-operation aliasing is in force."""
    return _depth[0] > 0


def window_open() -> bool:
    """Whether a gradient window is open (its module hooks alias the roots' weights)."""
    return bool(_windows)


def needs_per_operation() -> bool:
    """Whether a recomputation must alias per operation: its forward did, or no window is open to do it."""
    return active() or not _windows


@contextlib.contextmanager
def aliasing():
    """Inference tensors given to torch operations are replaced by aliases (the per-operation fallback)."""
    _depth[0] += 1
    try:
        with _AliasInferenceArguments():
            yield
    finally:
        _depth[0] -= 1


_fallback_told = [False]   # the slower path was named in the log this session


def with_fallback(window, run):
    """``run()``; when autograd refuses an inference tensor no module hook aliased, the window switches to
    per-operation aliasing and ``run()`` is made again (a forward, before any backward: nothing to undo)."""
    try:
        return run()
    except RuntimeError as error:
        if window is None or window.fell_back or not saved_an_inference_tensor(error):
            raise
    if _fallback_told[0]:
        log.debug("[PersonalVideo] an inference tensor outside the models' modules: aliasing every operation")
    else:   # once a session: every iteration opens a window of its own
        _fallback_told[0] = True
        log.warning("[PersonalVideo] the training step met a tensor made in inference mode that none of the models "
                    "holds (another node pack's patch?): it now handles every torch operation in Python, which "
                    "gives the same gradients but trains slower. Training without that pack's patches is faster.")
    window.per_operation()
    return run()


@contextlib.contextmanager
def module_aliased(module):
    """Within the block ``module`` and every module under it read aliases of their inference tensors, as in a
    call of a layer (:func:`layers`) through ``module(...)`` in an open window (for a forward run without the
    module's own hooks: a checkpointed layer's recomputation)."""
    window = _windows[-1] if _windows else None
    if window is None:
        yield
        return
    record = window._cover(module)
    try:
        yield
    finally:
        window._uncover(record)


@contextlib.contextmanager
def hooks_off():
    """Within the block the open windows' module hooks are not registered: for a stretch that runs without
    gradient (a checkpointed layer's forward), where they have nothing to do, yet each of them costs every module
    call a Python call and torch's slower call path (some 4 ms of a tiny UNet pass on one CPU core, measured:
    the bookkeeping alone of 600 module calls). Only calls with gradient on need them, and such a call under the
    block (a module that turns gradient on inside a forward without it) meets the per-operation fallback instead
    (:func:`with_fallback`). The hooks are registered again when the block ends, however it ends."""
    suspended = [w for w in _windows if w._handles]
    for window in suspended:
        window._unhook()
    try:
        yield
    finally:
        for window in suspended:
            if window in _windows:
                window._hook()


@contextlib.contextmanager
def layers(modules):
    """Within the block, in the open window, a call of one of ``modules`` (a model's layers: its checkpoint
    regions) with gradient on swaps aliases in for the layer's whole subtree at once, and the module calls
    under it pass through the window's hooks without work of their own (one walk over the layer's tables
    per call instead of a swap in and out at every module call under it). What the models hold between
    layer calls is unchanged: the swap lasts the layer's call. Outside an open window it does nothing."""
    window = _windows[-1] if _windows else None
    if window is None:
        yield
        return
    added = {id(m) for m in modules} - window._layers
    window._layers |= added
    try:
        yield
    finally:
        window._layers -= added


def saved_an_inference_tensor(error: BaseException) -> bool:
    """Whether ``error`` is autograd refusing an inference tensor that no module hook aliased."""
    return isinstance(error, RuntimeError) and "Inference tensors cannot be saved for backward" in str(error)


class Window:
    """The aliases and hooks of one gradient window."""

    def __init__(self):
        self._swapped = {}     # id(module) -> [(tables swapped, ids covered) of its calls under way]
        self._clone_for = set()   # ids of the norms whose input is copied
        self._layers = set()   # ids of the modules whose call swaps their whole subtree (:func:`layers`)
        self._covered = set()  # ids of the modules under a layer call under way: their tables are swapped
        self._stack = None
        self._handles = ()     # the global module hooks while they are registered

    def _hook(self):
        self._handles = (module_hooks.register_module_forward_pre_hook(self.pre_hook),
                         module_hooks.register_module_forward_hook(self.post_hook, always_call=True))

    def _unhook(self):
        for h in self._handles:
            h.remove()
        self._handles = ()

    def _swap_in(self, module):
        return _swap_tables(_tables_of(module))

    def _note_norms(self, module):
        norms = _NORMS.get(type(module).__name__)
        if norms:   # this block adds in place to what its norms read: they get a copy
            for name in norms:
                norm = module._modules.get(name)
                if norm is not None:
                    self._clone_for.add(id(norm))

    def _cover(self, module):
        """Aliases in for every inference tensor of ``module`` and the modules under it, which are covered
        until :meth:`_uncover` (their own calls then have nothing to swap); returns what to undo."""
        modules, tables, blocks = _subtree(module)
        tables = _swap_tables(tables)
        for m in blocks:
            self._note_norms(m)
        covered = set(map(id, modules)) - self._covered
        self._covered |= covered
        return tables, covered

    def _uncover(self, record):
        tables, covered = record
        _put_back(tables)
        self._covered.difference_update(covered)

    def pre_hook(self, module, args):
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return None
        key = id(module)
        if key not in self._covered:
            if key in self._layers:
                self._swapped.setdefault(key, []).append(self._cover(module))
            else:
                tables = self._swap_in(module)
                if tables:
                    self._swapped.setdefault(key, []).append((tables, ()))
                self._note_norms(module)
        if key in self._clone_for:
            return _clone_input(module, args)
        return None

    def post_hook(self, module, args, output):
        stack = self._swapped.get(id(module))
        if stack:
            self._uncover(stack.pop())
            if not stack:
                del self._swapped[id(module)]
        return None

    def put_back_all(self):
        for stack in self._swapped.values():
            while stack:
                self._uncover(stack.pop())
        self._swapped.clear()

    def per_operation(self):
        """Alias every operation's inference arguments for the rest of the window (the fallback)."""
        if self._stack is not None and not self._fallback:
            self._stack.enter_context(aliasing())
            self._fallback = True

    _fallback = False

    @property
    def fell_back(self) -> bool:
        """Whether the window switched to per-operation aliasing (correct, but every torch operation then goes
        through a Python function mode: far slower)."""
        return self._fallback


# an alias is kept while its tensor lives and is the same view of the same memory (windows open and close once per
# training iteration; the weights stay): id(tensor) -> (weak reference to it, alias, the tensor's memory, shape,
# strides and dtype when the alias was made); the tensor's death drops it
_ALIASES = {}


def _forget(key, ref):
    known = _ALIASES.get(key)
    if known is not None and known[0] is ref:
        del _ALIASES[key]


def _alias_of(t):
    known = _ALIASES.get(id(t))
    if known is not None:
        ref, alias, ptr, shape, stride, dtype = known
        if ref() is t and t.data_ptr() == ptr and alias.data_ptr() == ptr and t.dtype is dtype \
                and t.shape == shape and t.stride() == stride:
            return alias   # (the alias's own memory too: nothing moved it since)
    alias = normal_alias(t)
    key = id(t)
    ref = weakref.ref(t, lambda r, key=key: _forget(key, r))
    _ALIASES[key] = (ref, alias, t.data_ptr(), t.shape, t.stride(), t.dtype)
    return alias


_TABLES = weakref.WeakKeyDictionary()


def _tables_of(module):
    """The non-empty parameter and buffer tables of ``module`` and its direct children (kept while the module
    lives and its children are the same)."""
    children = tuple(module._modules.values())
    known = _TABLES.get(module)
    if known is not None and known[0] == tuple(map(id, children)):
        return known[1]
    tables = [table for m in (module, *children) if m is not None for table in (m._parameters, m._buffers)]
    _TABLES[module] = (tuple(map(id, children)), tables)
    return tables


_SUBTREES = weakref.WeakKeyDictionary()


def _subtree(module):
    """``(modules, tables, blocks)`` of ``module``'s subtree: the modules (itself included), their parameter and
    buffer tables, and the blocks among them whose norms get a copy of their input. Walked once per layer and
    kept while the layer lives (a layer is covered at every gradient pass, and the walk was a third of a cover).
    The kept walk holds weak references only (a submodule may hold its parent), and is walked again when a
    module under it died, holds other tables or has other children (a module added or put in place of another
    under the layer is then covered too, as a parent may read a child's weight without calling it)."""
    known = _SUBTREES.get(module)
    if known is not None:
        refs, kept, tables, blocks = known
        modules = [ref() for ref in refs]
        if all(m is not None and m._parameters is p and m._buffers is b
               and tuple(map(id, m._modules.values())) == c for m, (p, b, c) in zip(modules, kept)):
            return modules, tables, [modules[i] for i in blocks]
    modules = list(module.modules())
    kept = [(m._parameters, m._buffers, tuple(map(id, m._modules.values()))) for m in modules]
    tables = [table for m in modules for table in (m._parameters, m._buffers)]
    blocks = [i for i, m in enumerate(modules) if type(m).__name__ in _NORMS]
    # (the layer itself is the key: its reference here is weak too, or the entry would keep it alive; children are
    # kept by id, safe since each of them is also a weak reference above that reads None once it dies)
    _SUBTREES[module] = (tuple(weakref.ref(m) for m in modules), kept, tables, blocks)
    return modules, tables, [modules[i] for i in blocks]


def _swap_tables(tables):
    """Aliases in for the inference tensors of each parameter or buffer table in ``tables``; returns
    ``[(table, [(name, tensor it held)])]`` for :func:`_put_back`."""
    swapped = []
    for table in tables:
        if not table:
            continue
        entries = [(name, t) for name, t in table.items() if t is not None and t.is_inference()]
        if entries:
            for name, t in entries:
                table[name] = _alias_of(t)
            swapped.append((table, entries))
    return swapped


def _put_back(tables):
    for table, entries in tables:
        for name, t in entries:
            table[name] = t


@contextlib.contextmanager
def gradient_window(*roots: torch.nn.Module):
    """Inside the block, backward works through the models (``roots`` and any other: the hooks are global
    module hooks, acting only on calls made with gradient on); yields the :class:`Window`; afterwards nothing
    remains. ``roots`` name the models the window is for (kept for the callers' clarity and the norm
    workarounds, which act on any model too). Gradient mode inside is :func:`normal_tensors`'s: on when the
    window is opened from inference mode (a node), the caller's otherwise (a window opened under
    ``torch.no_grad()`` records nothing)."""
    window = Window()
    try:
        with contextlib.ExitStack() as stack, normal_tensors():
            window._stack = stack
            window._hook()
            _windows.append(window)
            try:
                yield window
            finally:
                _windows.remove(window)
                window._stack = None
    finally:
        window._unhook()
        window.put_back_all()


def normal_copy(t: torch.Tensor) -> torch.Tensor:
    """A non-inference copy of a tensor, no grad."""
    with normal_tensors():
        return t.detach().clone()
