"""A deterministic measure of training memory: bytes of the tensors autograd keeps for backward.

Inside the block every tensor an operation saves for backward passes through a
``torch.autograd.graph.saved_tensors_hooks`` pack hook; distinct storages are
counted once, and the weights of the given modules (resident anyway) are left
out.  With non-reentrant gradient checkpointing the tensors saved inside a
checkpointed region go to checkpoint's own (inner) hooks and are not kept; the
region's inputs are saved outside it and are counted.  The same run gives the
same count on any machine, unlike a timing or an RSS reading.
"""
from __future__ import annotations

import torch


class SavedTensorBytes:
    def __init__(self, modules=lambda: ()):
        self._modules = modules          # callable -> modules whose parameters/buffers are not counted
        self._excluded = None
        self.storages = {}
        self._hooks = None

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())

    def _pack(self, t):
        if self._excluded is None:   # the modules' tensors as they are during the pass (swapped copies included)
            self._excluded = {x.untyped_storage().data_ptr() for m in self._modules() if m is not None
                              for x in list(m.parameters()) + list(m.buffers())}
        if not isinstance(t, torch.nn.Parameter) and t.device.type != "meta":
            storage = t.untyped_storage()
            if storage.data_ptr() not in self._excluded:
                self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        return False
