"""How the late-step gate learns which step a Wan model call belongs to.

On SD1.5 the gate is updated by an ``attn1`` patch, which the UNet's spatial
transformer blocks call before each self-attention.  Core's Wan blocks call no
such patch; instead every Wan diffusion model runs its forward through
ComfyUI's ``DIFFUSION_MODEL`` wrappers (``comfy.patcher_extension``).  The gate
adds one wrapper, on the clone of the MODEL only: before each model evaluation
it updates the gate from the call's ``transformer_options`` (the sigma of the
call and the run's schedule) and the sampler on the call stack, exactly as the
SD1.5 patch does (:meth:`.gate.GateState.observe`), then runs the model
unchanged.  The wrapper changes no tensor; with the gate closed the q/k/v
forwards add nothing, so a call is bit-identical to the plain model's.
"""
from __future__ import annotations

import sys

WRAPPER_KEY = "personalvideo_sia_gate"


def _transformer_options(args, kwargs) -> dict:
    options = kwargs.get("transformer_options")
    if isinstance(options, dict):
        return options
    for value in reversed(args):   # WanModel.forward passes it positionally, after time_dim_concat
        if isinstance(value, dict) and ("sigmas" in value or "sample_sigmas" in value):
            return value
    return {}


def make_wan_gate_wrapper(state):
    """A DIFFUSION_MODEL wrapper that updates ``state`` (a :class:`.gate.GateState`) before each model call."""

    def observe_then_run(executor, *args, **kwargs):
        state.observe(_transformer_options(args, kwargs), sys._getframe(0))
        return executor(*args, **kwargs)

    return observe_then_run


def add_wan_gate(patched, state) -> None:
    """Put the gate's wrapper on the clone ``patched`` (a ModelPatcher of a Wan model)."""
    from comfy.patcher_extension import WrappersMP

    patched.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, make_wan_gate_wrapper(state))
