"""Recording, for each model call of a real sampling run, its sigma and whether the SIA adapter acted.

``recording(patched, reference)`` gives a clone of the adapted MODEL whose UNet
calls are watched: each call is also made on ``reference`` (a separate model
with the same weights and no adapter) with the same inputs, and the adapter
"acted" when the outputs differ; with the adapter off a call must equal the
plain model's bit for bit.  Sampler callbacks can be recorded into the same
event list, so that every call can be placed in the step it belongs to
without asking the gate (``steps_of_calls``).
"""
from __future__ import annotations

import torch


def model_sampling_of(model):
    """The model sampling a run of ``model`` uses (a ModelSamplingDiscrete patch included), on both hosts."""
    return model.object_patches.get("model_sampling", model.model.model_sampling)


class Recorder:
    def __init__(self):
        self.events = []          # ("call", sigma, acted) and ("step", i) in the order they happened

    @property
    def calls(self):
        return [(sigma, acted) for kind, sigma, acted in (e for e in self.events if e[0] == "call")]

    def callback(self, step, *args):
        self.events.append(("step", int(step), None))

    def clear(self):
        self.events.clear()


def recording(patched, reference):
    """(watched clone of ``patched``, Recorder)."""
    recorder = Recorder()
    watched = patched.clone()

    def wrapper(apply_model, args):
        out = apply_model(args["input"], args["timestep"], **args["c"])
        c = dict(args["c"])
        options = dict(c.get("transformer_options", {}))
        options.pop("patches", None)
        c["transformer_options"] = options
        plain = reference.model.apply_model(args["input"], args["timestep"], **c)
        sigma = float(args["timestep"].reshape(-1)[0])
        recorder.events.append(("call", sigma, not torch.equal(out, plain)))
        return out

    watched.set_model_unet_function_wrapper(wrapper)
    return watched, recorder


def steps_by_callback(events) -> list:
    """The step of each call of a sampler that reports step i right after the step's first model call
    (every step-loop sampler of ComfyUI's k-diffusion module does): the last call before report i opens
    step i; the calls after it, up to the one that opens the next step, are step i's later calls."""
    steps, current, last = [], 0, None
    for kind, value, _ in events:
        if kind == "call":
            steps.append(current)
            last = len(steps) - 1
        elif last is not None:
            steps[last] = value
            current = value
    return steps


def steps_by_noise(calls, schedule) -> list:
    """The step of each call by noise level: the last schedule point at or above the call's sigma."""
    points = [float(s) for s in schedule[:-1]]
    out = []
    for sigma, _ in calls:
        index = max([j for j, s in enumerate(points) if s >= sigma * (1 - 1e-4)], default=0)
        out.append(index)
    return out


def expected_steps(schedule, model_sampling, start, end, tolerance=1e-3) -> list:
    """The steps the rule adapts, computed with the host's own percent_to_sigma: a step is on when its
    starting sigma lies between percent_to_sigma(end) and percent_to_sigma(start); the final step of a
    schedule that ends at zero noise counts as position 1."""
    upper = model_sampling.percent_to_sigma(max(start - tolerance, 0.0)) if start - tolerance > 0 else float("inf")
    lower = model_sampling.percent_to_sigma(end + tolerance) if end + tolerance < 1 else 0.0
    n = len(schedule) - 1
    on = []
    for i in range(n):
        if i == n - 1 and float(schedule[-1]) == 0:
            inside = end >= 1 - tolerance
        else:
            inside = lower <= float(schedule[i]) <= upper
        if inside:
            on.append(i)
    return on


def acted_by_step(steps, calls) -> dict:
    """step -> set of 'acted' values of its calls (a step gated as one has a single value)."""
    out = {}
    for step, (_, acted) in zip(steps, calls):
        out.setdefault(step, set()).add(acted)
    return out


NO_STEP_LOOP = {"dpm_fast", "dpm_adaptive", "uni_pc", "uni_pc_bh2"}   # samplers whose calls are placed by noise level


def check_run(recorder, schedule, sampler_name, expected) -> list:
    """The steps a recorded run adapted, after checking that every step's calls were all adapted or all not and
    that the adapted steps are the ``expected`` ones the run reached."""
    calls = recorder.calls
    assert calls, "the sampler made no model call"
    if sampler_name in NO_STEP_LOOP:
        steps = steps_by_noise(calls, schedule)
    else:
        steps = steps_by_callback(recorder.events)
    by_step = acted_by_step(steps, calls)
    mixed = {s: v for s, v in by_step.items() if len(v) > 1}
    assert not mixed, f"steps with calls both adapted and not: {sorted(mixed)}; calls {list(zip(steps, calls))}"
    on = sorted(s for s, v in by_step.items() if True in v)
    assert on == [s for s in expected if s in by_step], (on, expected, list(zip(steps, calls)))
    return on
