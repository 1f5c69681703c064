"""A deterministic measure of training memory: bytes of the tensors autograd keeps for backward.

Inside the block every tensor an operation saves for backward passes through a
``torch.autograd.graph.saved_tensors_hooks`` pack hook; storages are counted
once however many times they are saved, and weights (parameters and views of
them, resident anyway, and the trainer's zero-copy aliases of inference
weights) are left out; weight copies an op makes (a cast) count.  Under the trainer's gradient checkpointing a
checkpointed layer runs without grad in the forward (nothing saved) and the tensors its recomputation saves in
backward live only until that layer's backward is done: they are left out
(``training.checkpointing.recomputing``); the layers' inputs are saved in the forward and are counted.

- ``bytes``: all distinct storages saved in the block (for one backward pass);
- ``peak``: the most bytes held for backward at any one time (over many passes:
  a graph's saved tensors are released when its backward has run).
The same run gives the same figures on any machine, unlike a timing or an RSS reading.
"""
from __future__ import annotations

import weakref

import torch


class _Held:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


def _is_weight(t) -> bool:
    for x in (t, getattr(t, "_base", None)):
        if isinstance(x, torch.nn.Parameter) or getattr(x, "_pv_weight_alias", False):
            return True
    return False


def _recomputing() -> bool:
    from comfyui_personalvideo.training.checkpointing import recomputing

    return recomputing()


class SavedTensorBytes:
    def __init__(self):
        self.storages = {}
        self._live = {}                  # storage -> number of saved tensors holding it
        self.live = 0
        self.peak = 0
        self._hooks = None
        self.weight_storages = set()     # data pointers of the weights (and weight aliases) saved

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def _release(self, ptr, nbytes):
        self._live[ptr] -= 1
        if not self._live[ptr]:
            del self._live[ptr]
            self.live -= nbytes

    def _pack(self, t):
        if t.device.type == "meta" or _recomputing():
            return t   # a checkpointed layer's recomputation: held only until that layer's backward is done
        if _is_weight(t):
            self.weight_storages.add(t.untyped_storage().data_ptr())
            return t
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        self.storages[ptr] = nbytes
        if not self._live.get(ptr):
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self._live[ptr] = self._live.get(ptr, 0) + 1
        held = _Held(t)
        weakref.finalize(held, self._release, ptr, nbytes)
        return held

    def reset_peak(self) -> int:
        """The peak so far; the next one is counted from what is held now."""
        peak, self.peak = self.peak, self.live
        return peak

    @staticmethod
    def _unpack(x):
        return x.tensor if isinstance(x, _Held) else x

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        return False


def _storage_key(x):
    """The StorageImpl behind an operation's argument (a strided tensor or a storage), else None."""
    if isinstance(x, torch.Tensor):
        return x.untyped_storage()._cdata if x.layout == torch.strided else None
    if isinstance(x, torch.TypedStorage):
        x = x.untyped_storage()
    return x._cdata if isinstance(x, torch.UntypedStorage) else None


class AllocationPeak:
    """Peak bytes of the tensors torch operations create inside the block, on any device, meta included.

    A ``TorchDispatchMode`` sees every operation's outputs (forward, backward and checkpoint recomputation
    alike); a storage none of the operation's inputs had is a new allocation, and counts until the storage
    itself is gone (a view, an in-place result or a ``set_`` alias is over memory that was there). On the meta device
    nothing is allocated, yet the shapes, dtypes and lifetimes are those of the real run, so the same
    count gives the peak a real device would see (weights that exist before the block are not counted;
    allocator rounding and caching are not modelled). The trainer's zero-copy aliases of inference weights are
    made by ``set_`` with the weight's storage as an input, so they are not new either.
    """

    def __init__(self):
        self.live = 0
        self.peak = 0
        self._storages = {}      # StorageImpl address -> bytes, while alive
        self._mode = None

    def _track(self, t, inputs):
        storage = t.untyped_storage()
        key = storage._cdata
        if key in inputs or key in self._storages:
            return
        nbytes = storage.nbytes()
        self._storages[key] = nbytes
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        # counted until the storage itself is gone: torch keeps a storage's Python object as long as the storage
        # lives, whereas the tensor that brought it may die first (its views live on) or be pointed elsewhere by
        # ``set_`` (the storage dies, and a new one at the same address would have been taken for it)
        weakref.finalize(storage, self._free, key)

    def _free(self, key):
        self.live -= self._storages.pop(key, 0)

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                inputs = {_storage_key(x) for x in tree_leaves((args, kwargs))} - {None}
                out = func(*args, **(kwargs or {}))
                for t in tree_leaves(out):
                    if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                        tracker._track(t, inputs)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        return False


def cpu_allocator_peak(run) -> int:
    """Peak bytes the CPU allocator holds during ``run()`` above what it held at the start, from torch.profiler's
    memory events: what :class:`AllocationPeak` is checked against (it also sees the kernels' own workspaces,
    which no operation returns, such as ``convolution_backward``'s on the CPU)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak
