"""Cancel that answers: the interruption check run before every layer of a model evaluation.

ComfyUI's Cancel only sets a flag; the trainer has to look at it. Between
iterations is not enough at SD1.5 size on a CPU (one iteration is minutes), so
:func:`checked_in_layers` puts a forward pre-hook on each given layer (the
UNet's and the VAE decoder's blocks, :func:`.checkpointing.regions_of`) that
calls the check: a cancelled run stops within one layer's time. The hooks are
removed when the block ends, whatever happens; the layers are otherwise untouched.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def checked_in_layers(layers, check):
    """Within the block, ``check()`` runs before each of ``layers`` runs (it raises to cancel)."""
    handles, seen = [], set()

    def hook(module, args):
        check()

    try:
        for layer in layers:
            if id(layer) not in seen:
                seen.add(id(layer))
                handles.append(layer.register_forward_pre_hook(hook))
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
