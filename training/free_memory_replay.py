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
import threading


def _host():
    try:
        import comfy.model_management as host
    except ImportError:
        return None
    return host if callable(getattr(host, "get_free_memory", None)) else None


_pointed = threading.local()   # .answer: what the reading installed by :func:`installed` answers on this thread


def _installed_reading(real):
    def get_free_memory(*args, **kwargs):
        answer = getattr(_pointed, "answer", None)
        return real(*args, **kwargs) if answer is None else answer(real, args, kwargs)
    get_free_memory._pv_installed = True
    return get_free_memory


@contextlib.contextmanager
def installed():
    """Within the block the host's free-memory reading is one patch that :func:`recording` and
    :func:`replaying` point at their answer (the real reading where none is pointed to), instead of each
    patching the host and putting it back: a gradient pass has one recording or replay per checkpointed
    layer."""
    host = _host()
    if host is None or getattr(host.get_free_memory, "_pv_installed", False):
        yield
        return
    real = host.get_free_memory
    host.get_free_memory = _installed_reading(real)
    try:
        yield
    finally:
        host.get_free_memory = real


class _Pointing:
    """The installed reading answers with ``answer`` on this thread within the block."""

    __slots__ = ("answer", "previous")

    def __init__(self, answer):
        self.answer = answer

    def __enter__(self):
        self.previous = getattr(_pointed, "answer", None)
        _pointed.answer = self.answer

    def __exit__(self, *exc):
        _pointed.answer = self.previous


def _answering(answer):
    host = _host()
    if host is not None and getattr(host.get_free_memory, "_pv_installed", False):
        return _Pointing(answer)
    return _patching(host, answer)


@contextlib.contextmanager
def _patching(host, answer):
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
