"""onnxruntime sessions with a provider choice, and honest fallback notices.

``auto`` picks the best provider this onnxruntime build offers (CUDA, then ROCm,
then DirectML, then CPU).  When CUDA was asked for (explicitly, or by ``auto``
because the build lists it) but the session came up without it, the pack says so
once per process, with the reason onnxruntime gave: its Python warning when the
provider is not in the build, or what its C++ logger printed while loading the
provider library (the usual CUDA/cuDNN version mismatch of onnxruntime-gpu).
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings

from .errors import FaceStackError

log = logging.getLogger(__name__)

PROVIDER_CHOICES = ("auto", "CUDA", "CPU", "ROCm", "DirectML")
_NAMES = {"CUDA": "CUDAExecutionProvider", "ROCm": "ROCMExecutionProvider", "CPU": "CPUExecutionProvider",
          "DirectML": "DmlExecutionProvider"}
_AUTO_ORDER = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider")

_noticed: set = set()


def available_providers() -> list:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def requested_providers(choice: str) -> list:
    """The provider list to ask onnxruntime for, CPU always last as the fallback."""
    if choice not in PROVIDER_CHOICES:
        raise FaceStackError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {choice!r}")
    if choice == "auto":
        have = set(available_providers())
        best = [p for p in _AUTO_ORDER if p in have and p != "CPUExecutionProvider"][:1]
        return best + ["CPUExecutionProvider"]
    name = _NAMES[choice]
    return [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]


class _CaptureStderr:
    """Collect what native code writes to file descriptor 2 (onnxruntime's logger)."""

    def __enter__(self):
        self.text = ""
        try:
            sys.stderr.flush()
        except Exception:
            pass
        try:
            self._saved = os.dup(2)
            self._file = tempfile.TemporaryFile(mode="w+b")
            os.dup2(self._file.fileno(), 2)
        except OSError:
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is None:
            return False
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()
        if self.text.strip():  # give the messages back to the console as well
            try:
                sys.stderr.write(self.text)
            except Exception:
                pass
        return False


def _notice_once(key: str, message: str) -> None:
    if key in _noticed:
        return
    _noticed.add(key)
    log.warning(message)
    print(f"[PersonalVideo] {message}", file=sys.stderr)


GPU_HINT = ("install exactly one onnxruntime package, `onnxruntime-gpu` built for your CUDA/cuDNN "
            "(having both `onnxruntime` and `onnxruntime-gpu` hides the GPU provider)")


class ProviderMessages:
    """What onnxruntime says while sessions are created: its Python warnings and what its C++ logger
    prints (provider libraries that fail to load).  Use as ``with ProviderMessages() as said: ...``,
    then :meth:`reasons` tells, for each requested GPU provider a session came up without, why."""

    def __enter__(self):
        import onnxruntime

        onnxruntime.set_default_logger_severity(2)  # let provider-loading warnings through
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        self._stderr = _CaptureStderr().__enter__()
        return self

    def __exit__(self, *exc):
        import onnxruntime

        try:
            self._stderr.__exit__(*exc)
            self._warnings.__exit__(*exc)
        finally:
            onnxruntime.set_default_logger_severity(3)
        return False

    def reasons(self, requested: list, active: list) -> dict:
        """{provider: reason} for each non-CPU provider of ``requested`` missing from ``active``."""
        out = {}
        for name in requested:
            if name == "CPUExecutionProvider" or name in active:
                continue
            said = [str(w.message) for w in self._caught if name in str(w.message)]
            lines = [ln.strip() for ln in self._stderr.text.splitlines()
                     if any(k in ln for k in ("CUDA", "cuda", "cudnn", "cuDNN", "ROCM", "rocm", "Fail", "fail",
                                              "rror"))]
            out[name] = "; ".join(dict.fromkeys(said + lines)) or "onnxruntime gave no reason"
        return out


def open_session(model, providers: list):
    """``(session, reasons)``: an InferenceSession for ``model`` (a path or serialised bytes) asking for
    ``providers``, and for each non-CPU provider the session came up without, the reason onnxruntime gave
    (its Python warning, or what its C++ logger printed while loading the provider library).

    Whatever onnxruntime raises when it cannot load the model is raised unchanged.
    """
    import onnxruntime

    with ProviderMessages() as said:
        session = onnxruntime.InferenceSession(model, providers=providers)
    return session, said.reasons(providers, session.get_providers())


def notice_fallbacks(reasons: dict, active: list) -> None:
    """Say once per provider that face models run without it, and why."""
    for name, reason in reasons.items():
        _notice_once(
            f"fallback:{name}",
            f"{name} was requested for face models but onnxruntime runs them on {', '.join(active)}. "
            f"Reason given by onnxruntime: {reason[:600]}. To use the GPU: {GPU_HINT}.",
        )


def create_session(path: str, choice: str = "auto"):
    """An ``onnxruntime.InferenceSession`` for ``path`` with the chosen provider.

    A file onnxruntime cannot read raises :class:`FaceStackError` naming the file.
    """
    import onnxruntime  # noqa: F401  (a missing onnxruntime is an ImportError, not a corrupt file)

    if not os.path.isfile(path):
        raise FaceStackError(f"face model not found: {path}")
    providers = requested_providers(choice)
    try:
        session, reasons = open_session(path, providers)
    except Exception as error:
        raise FaceStackError(
            f"onnxruntime could not load {path} ({type(error).__name__}: {str(error).strip()[:300]}). "
            "The file is probably truncated or corrupt (an interrupted download or copy): "
            "delete it and copy the model pack again."
        ) from error
    notice_fallbacks(reasons, session.get_providers())
    return session
