"""Which step the running sampler is in, read from its own frames (nothing is patched).

A model call made by a sampler does not say which step of the schedule it
belongs to: heun's corrector, dpmpp_2s_ancestral's and dpm_2_ancestral's second
call, heunpp2's look-ahead calls or a churned euler step (``s_churn > 0``)
evaluate the model at noise levels that lie on, or even beyond, the points of
another step.  Every sampler of ComfyUI's k-diffusion module (both hosts: the
March 2024 tree and ComfyUI 0.3.x) runs one loop ``for i in ...(len(sigmas) - 1)``
and makes all the model calls of step ``i`` inside that iteration, so the step
of a call is that loop's ``i``, read from the sampler's frame on the call stack.

Only frames of that module are read for a loop index: a loop elsewhere (a
third-party sampler, a hand-written training loop) may keep a stale ``i`` after
its loop ends.  Samplers without such a loop (uni_pc, uni_pc_bh2, dpm_fast,
dpm_adaptive, others' loops) get ``index None``; the gate then places the call
by its noise level.

The schedule of the run comes from the same place: the ``sigmas`` argument of
the innermost sampling function on the stack.  ComfyUI since late 2024 also
passes it to the model as ``transformer_options["sample_sigmas"]``; the March
2024 tree does not, and this module is what makes the gate work there without
wrapping any of the host's functions.

One thing neither schedule says: whether its final zero is the end of the
denoising.  A KSampler pass stopped early with ``force_full_denoise``
(KSamplerAdvanced with ``end_at_step`` before the last step and its default
``return_with_leftover_noise = disable``) has the sigma where it stops replaced
by 0 before the sampler sees it, in ``sample_sigmas`` too (both hosts).
:func:`stopped_early` finds that out from the host's ``KSampler.sample`` frame.
"""
from __future__ import annotations

import os
import sys
from typing import NamedTuple, Optional

import torch

_K_DIFFUSION = "comfy.k_diffusion.sampling"
_SAMPLERS = "comfy.samplers"


class SamplerPlace(NamedTuple):
    schedule: Optional[torch.Tensor]   # the sigmas of the innermost sampling function, or None
    index: Optional[int]               # the k-diffusion loop's step index, or None


def _module_file(name: str) -> Optional[str]:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    return os.path.normcase(os.path.abspath(path)) if path else None


def _k_diffusion_file() -> Optional[str]:
    return _module_file(_K_DIFFUSION)


def _schedule_in(local_vars) -> Optional[torch.Tensor]:
    sigmas = local_vars.get("sigmas")
    if isinstance(sigmas, torch.Tensor) and sigmas.ndim == 1 and sigmas.shape[0] >= 2:
        return sigmas
    return None


def sampler_place(start_frame=None) -> SamplerPlace:
    """The schedule and step index of the sampler whose model call is under way (see the module doc)."""
    k_file = _k_diffusion_file()
    frame = start_frame if start_frame is not None else sys._getframe(1)
    schedule = None
    while frame is not None:
        code = frame.f_code
        if "sigmas" not in code.co_varnames and "sigmas" not in code.co_cellvars:
            frame = frame.f_back     # cheap skip: reading f_locals of every frame would cost far more
            continue
        local_vars = frame.f_locals
        found = _schedule_in(local_vars)
        if found is not None:
            index = local_vars.get("i")
            in_loop = (k_file is not None and isinstance(index, int)
                       and os.path.normcase(os.path.abspath(code.co_filename)) == k_file
                       and 0 <= index < found.shape[0] - 1)
            if in_loop:
                return SamplerPlace(found, index)
            if schedule is None:
                schedule = found
        frame = frame.f_back
    return SamplerPlace(schedule, None)


def stopped_early(start_frame=None) -> bool:
    """Whether the run under way is a pass of the host's ``KSampler.sample`` that stops before the end of its
    schedule with ``force_full_denoise``: its schedule's final 0 then stands for a mid-schedule sigma.

    Read from the innermost ``KSampler.sample`` frame of ``comfy.samplers`` on the stack: ``last_step`` before
    the last point of the KSampler's own schedule, and ``force_full_denoise`` set (the host's own test).  No
    such frame (SamplerCustom, SamplerCustomAdvanced, others' loops): False.
    """
    samplers_file = _module_file(_SAMPLERS)
    frame = start_frame if start_frame is not None else sys._getframe(1)
    while frame is not None and samplers_file is not None:
        code = frame.f_code
        if "force_full_denoise" in code.co_varnames and "last_step" in code.co_varnames \
                and os.path.normcase(os.path.abspath(code.co_filename)) == samplers_file:
            local_vars = frame.f_locals
            last_step, full = local_vars.get("last_step"), getattr(local_vars.get("self"), "sigmas", None)
            return bool(local_vars.get("force_full_denoise")) and isinstance(last_step, int) \
                and isinstance(full, torch.Tensor) and full.ndim == 1 and last_step < full.shape[0] - 1
        frame = frame.f_back
    return False
