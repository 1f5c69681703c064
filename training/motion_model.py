"""The motion model AnimateDiff-Evolved attached to a MODEL, as far as the trainer needs it: how many frames
it takes (checked before training starts), and a copy of the MODEL without it for the image stage.

AnimateDiff-Evolved refuses a video longer than its motion model's position
encoding (``encoding_max_len``: 24 for AnimateDiff v1, 32 for v2/v3, 64 for
AnimateLCM, none for some formats), but only when sampling starts, deep in a
run. With context options attached, the video is sampled in windows of
``context_length`` frames (when it is longer than that, or as long with
``use_on_equal_length``), and then the window, not the video, must fit; view
options narrow the window further. This module reads the attached motion
models and context options the way AnimateDiff-Evolved stores them on the
ModelPatcher (v1.5: ``additional_models["ADE"]`` and the ``ADE_params``
attachment; early 2024 versions: ``motion_models`` and
``motion_injection_params``) and applies the same rule. A MODEL without a
motion model takes any number of frames.

:func:`without_motion_models` gives a clone of a MODEL that does not carry the motion models (nor inject
them into the UNet when loaded), for stage 1, which trains on single photos: a motion model would treat a
batch of photos as the frames of one video.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import TrainingError

VIEW_AS_CONTEXT = "view_as_context"


@dataclass
class MotionLimit:
    name: str
    max_frames: int | None   # None: no limit


def motion_models(model) -> list:
    """The motion-model patchers AnimateDiff-Evolved attached to ``model`` (empty if none)."""
    found = []
    additional = getattr(model, "additional_models", None)
    if isinstance(additional, dict):
        found += list(additional.get(ADE_KEY, []) or [])
    group = getattr(model, "motion_models", None)
    found += list(getattr(group, "models", None) or [])
    return [m for m in found if hasattr(getattr(m, "model", None), "encoding_max_len")]


def motion_limits(model) -> list:
    limits = []
    for patcher in motion_models(model):
        mm = patcher.model
        info = getattr(mm, "mm_info", None)
        name = getattr(info, "mm_name", None) or type(mm).__name__
        max_len = getattr(mm, "encoding_max_len", None)
        limits.append(MotionLimit(str(name), int(max_len) if max_len is not None else None))
    return limits


def context_options(model):
    """AnimateDiff-Evolved's context options group attached to ``model``, or None."""
    params = None
    get_attachment = getattr(model, "get_attachment", None)
    if callable(get_attachment):
        params = get_attachment("ADE_params")
    if params is None:
        params = getattr(model, "motion_injection_params", None)
    return getattr(params, "context_options", None)


def _window(frames: int, options) -> tuple:
    """(frames the motion model sees at once, whether that is a context window)."""
    if options is None:
        return frames, False
    contexts = getattr(options, "contexts", None) or []
    length = getattr(options, "context_length", None)
    if contexts and str(getattr(contexts[0], "context_schedule", "")) == VIEW_AS_CONTEXT:
        length = frames
    if not length:
        return frames, False
    allow_equal = bool(getattr(options, "use_on_equal_length", False))
    if not (frames >= length if allow_equal else frames > length):
        return frames, False
    view = getattr(options, "view_options", None)
    view_length = getattr(view, "context_length", None) if view is not None else None
    return int(view_length or length), True


def check_frames(model, frames: int) -> None:
    """TrainingError (naming the ``frames`` input) if the attached motion model cannot take ``frames``."""
    limits = [lim for lim in motion_limits(model) if lim.max_frames is not None]
    if not limits:
        return
    window, windowed = _window(int(frames), context_options(model))
    for lim in limits:
        if window <= lim.max_frames:
            continue
        if windowed:
            raise TrainingError(
                f"the context options attached to the MODEL sample windows of {window} frames, but the motion "
                f"model '{lim.name}' takes at most {lim.max_frames} frames at once. Set context_length in the "
                f"context options to {lim.max_frames} or less (16 is usual).")
        raise TrainingError(
            f"frames is {frames}, but the motion model '{lim.name}' attached to the MODEL takes at most "
            f"{lim.max_frames} frames at once. Set frames to {lim.max_frames} or less (16 is what AnimateDiff "
            "was trained with), or attach context options to the motion model (AnimateDiff-Evolved's Context "
            "Options nodes) so longer videos are sampled in windows.")


ADE_KEY = "ADE"   # AnimateDiff-Evolved's key for its additional models and injections (v1.5)


def without_motion_models(model):
    """A clone of ``model`` without AnimateDiff-Evolved's motion models (``model`` itself if it has none)."""
    if not motion_models(model):
        return model
    clone = model.clone()
    if hasattr(clone, "remove_injections"):
        clone.remove_injections(ADE_KEY)
    if hasattr(clone, "remove_additional_models"):
        clone.remove_additional_models(ADE_KEY)
    if getattr(clone, "motion_models", None) is not None:   # early 2024 versions inject from this group
        clone.motion_models = None
    return clone
