"""The host's free-memory readings, recorded while a checkpointed region runs forward and replayed, in the
same order, when backward recomputes it.

ComfyUI's split and sub-quadratic attention (the UNet's, the motion modules', the VAE's) choose how they
slice the work from ``comfy.model_management.get_free_memory()`` at call time. Under gradient
checkpointing a region runs twice, forward and then again during backward, when other tensors hold the
memory: the second run would slice differently and save tensors of other shapes, which checkpointing
refuses ("Recomputed values ... have different metadata"), or, where the shapes happen to agree, compute
other floating-point sums than the forward did. With the forward's readings replayed, the recomputation
makes the very choices the forward made, whatever attention the host picked and however much memory is
free by then. Calls beyond what the forward made (none in practice) read the real free memory.
"""
from __future__ import annotations

import contextlib


def _host():
    try:
        import comfy.model_management as host
    except ImportError:
        return None
    return host if callable(getattr(host, "get_free_memory", None)) else None


@contextlib.contextmanager
def _answering(answer):
    host = _host()
    if host is None:
        yield
        return
    real = host.get_free_memory

    def get_free_memory(*args, **kwargs):
        return answer(real, args, kwargs)

    host.get_free_memory = get_free_memory
    try:
        yield
    finally:
        host.get_free_memory = real


def recording(readings: list):
    """Within the block every free-memory reading is appended to ``readings``."""
    def answer(real, args, kwargs):
        value = real(*args, **kwargs)
        readings.append(value)
        return value
    return _answering(answer)


def replaying(readings: list):
    """Within the block free-memory readings are ``readings``, in order (then the real ones)."""
    pending = list(readings)

    def answer(real, args, kwargs):
        return pending.pop(0) if pending else real(*args, **kwargs)
    return _answering(answer)
