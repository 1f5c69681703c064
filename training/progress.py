"""What the artist sees while the trainer runs: one progress bar over both stages, the current loss and face
similarity as text under the node, and preview images of the frames the adapter is trained on.

- Bar: ``comfy.utils.ProgressBar`` over textual-inversion steps + adapter iterations.
- Text: ``PromptServer.instance.send_progress_text(text, node_id)`` where the host has it (ComfyUI since
  mid 2025); older hosts, or no server at all (scripts, tests), simply get no text. A failing send turns
  the text off for the run, never the training.
- Preview: during stage 2 the frame the identity loss just saw (already decoded, no extra work) goes to
  the bar as ``("JPEG", PIL image, max size)``, ComfyUI's own preview format, on the first and last
  iteration and at most once every ``preview_interval_s`` seconds in between.
"""
from __future__ import annotations

import logging
import math
import sys
import time

log = logging.getLogger("PersonalVideo")
PREVIEW_INTERVAL_S = 2.0
DEFAULT_PREVIEW_SIZE = 512


def _server():
    module = sys.modules.get("server")   # imported by ComfyUI's start-up only; no server, no text
    return getattr(getattr(module, "PromptServer", None), "instance", None)


def _node_id(server):
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        get_executing_context = None
    context = get_executing_context() if get_executing_context is not None else None
    if context is not None and getattr(context, "node_id", None) is not None:
        return context.node_id
    return getattr(server, "last_node_id", None)


def _preview_size():
    try:
        from comfy.cli_args import args
    except ImportError:
        return DEFAULT_PREVIEW_SIZE
    return int(getattr(args, "preview_size", DEFAULT_PREVIEW_SIZE) or DEFAULT_PREVIEW_SIZE)


def frame_to_pil(frame):
    """A [1, 3, H, W] (or [3, H, W]) tensor in 0..1 as an RGB PIL image."""
    import numpy as np
    from PIL import Image

    t = frame.detach().float().cpu()
    t = t[0] if t.ndim == 4 else t
    array = (t.clamp(0, 1).movedim(0, -1).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(array[..., :3])


def _fmt(value, digits):
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


class TrainingProgress:
    def __init__(self, ti_steps: int, sia_iterations: int, preview_interval_s: float = PREVIEW_INTERVAL_S,
                 clock=time.monotonic):
        import comfy.utils

        self.ti_steps, self.sia_iterations = int(ti_steps), int(sia_iterations)
        self.total = self.ti_steps + self.sia_iterations
        self.bar = comfy.utils.ProgressBar(self.total)
        self.preview_interval_s = preview_interval_s
        self.clock = clock
        self._last_preview = None
        self._server = _server()
        self._send_text = getattr(self._server, "send_progress_text", None)
        self._node = _node_id(self._server) if self._send_text is not None else None
        self.texts = []          # what was shown, newest last

    def _text(self, text: str) -> None:
        self.texts.append(text)
        if self._send_text is None or self._node is None:
            return
        try:
            self._send_text(text, self._node)
        except Exception as exc:  # the text is a nicety: never let it stop a training run
            log.debug("[PersonalVideo] progress text turned off: %s", exc)
            self._send_text = None

    def token_step(self, step: int, loss: float) -> None:
        self.bar.update_absolute(step + 1, self.total)
        self._text(f"token (stage 1) {step + 1}/{self.ti_steps}\nloss {_fmt(loss, 4)}")

    def adapter_iteration(self, it: int, loss: float, similarity: float, frame=None) -> None:
        now = self.clock()
        preview = None
        due = self._last_preview is None or it == self.sia_iterations - 1 or \
            now - self._last_preview >= self.preview_interval_s
        if frame is not None and due:
            preview = ("JPEG", frame_to_pil(frame), _preview_size())
            self._last_preview = now
        self.bar.update_absolute(self.ti_steps + it + 1, self.total, preview)
        self._text(f"adapter (stage 2) {it + 1}/{self.sia_iterations}\nloss {_fmt(loss, 4)}, "
                   f"face similarity {_fmt(similarity, 3)}")
