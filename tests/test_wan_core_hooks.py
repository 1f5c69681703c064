"""The core hooks route gives our gate's output on core Wan, from the same adapter file.

Users who prefer core nodes can gate the adapter file with ComfyUI's own hook
nodes instead of Apply SIA at Late Steps: ``CreateHookLoraModelOnly`` on the
file, ``SetHookKeyframes`` with two ``CreateHookKeyframe`` (strength 0 from
0.0, strength 1 from 0.75; a single keyframe at 0.75 leaves the hook at full
strength before it), then ``PairConditioningSetProperties`` ("Cond Pair Set
Props") puts the hooks on both the positive and the negative conditioning.  Core decides per model call by sigma <=
percent_to_sigma(0.75); our gate per step by the same noise level, so with
first-order samplers the two agree call for call.  Outputs are compared with
the plain run as the scale: hooks merge the LoRA into the weights, our gate
adds it in the forward, so they differ only by rounding.
"""
import os

import pytest
import torch

import wan_models

wan_models.skip_without_wan()

import folder_paths  # noqa: E402
import nodes  # noqa: E402

from comfyui_personalvideo.sia import apply_sia, save_adapter  # noqa: E402

LORA_NAME = "wan_sia_hooks_test.safetensors"


def _node(name):
    return nodes.NODE_CLASS_MAPPINGS[name]()


@pytest.fixture(scope="module")
def rig():
    model = wan_models.tiny_wan_model(seed=0)
    adapter = wan_models.random_wan_adapter(model)
    folder = folder_paths.get_folder_paths("loras")[0]
    os.makedirs(folder, exist_ok=True)
    path = save_adapter(adapter, os.path.join(folder, LORA_NAME))
    yield model, adapter
    os.remove(path)


def core_hooks_route(start_percent: float = 0.75):
    """The HOOKS of the documented route (docs/wan.md), built with core's own nodes."""
    (hooks,) = _node("CreateHookLoraModelOnly").create_hook_model_only(LORA_NAME, 1.0)
    (keyframes,) = _node("CreateHookKeyframe").create_hook_keyframe(0.0, 0.0)
    (keyframes,) = _node("CreateHookKeyframe").create_hook_keyframe(1.0, start_percent, prev_hook_kf=keyframes)
    (hooks,) = _node("SetHookKeyframes").set_hook_keyframes(hooks, keyframes)
    return hooks


def hooked(positive, negative, hooks):
    """Both conditionings with the hooks, as the Cond Pair Set Props node sets them."""
    return _node("PairConditioningSetProperties").set_properties(positive, negative, 1.0, "default", hooks=hooks)


def _ksampler(model, positive, negative, steps, sampler, scheduler="simple"):
    with torch.inference_mode():
        return _node("KSampler").sample(model, 7, steps, 1.5, sampler, scheduler, positive, negative,
                                        wan_models.empty_wan_latent(), 1.0)[0]["samples"]


@pytest.mark.parametrize("shift,steps,sampler,scheduler", [
    (8.0, 8, "euler", "simple"), (8.0, 20, "euler", "simple"), (5.0, 4, "euler", "simple"),
    (8.0, 10, "dpmpp_2m", "normal"), (3.0, 12, "uni_pc", "simple"),
])
def test_core_hooks_with_keyframes_at_0_and_075_give_our_gates_output(rig, shift, steps, sampler, scheduler):
    model, adapter = rig
    model = wan_models.with_shift(model, shift)
    positive, negative = wan_models.random_text_cond(1), wan_models.random_text_cond(2)
    hooks = core_hooks_route()
    hooked_positive, hooked_negative = hooked(positive, negative, hooks)

    plain = _ksampler(model, positive, negative, steps, sampler, scheduler)
    ours = _ksampler(apply_sia(model, adapter, 1.0, 0.75)[0], positive, negative, steps, sampler, scheduler)
    core = _ksampler(model, hooked_positive, hooked_negative, steps, sampler, scheduler)
    every_step = _ksampler(apply_sia(model, adapter, 1.0, 0.0)[0], positive, negative, steps, sampler, scheduler)

    effect = (ours - plain).abs().max()
    assert effect > 1e-3                                   # the gated adapter changed the video
    assert (every_step - ours).abs().max() > 10 * (core - ours).abs().max()   # and the gate is not every step
    assert (core - ours).abs().max() < 1e-3 * effect       # the same video, up to rounding


def test_one_keyframe_alone_is_not_the_gate(rig):
    """Why the route needs the strength-0 keyframe: before its first keyframe a hook acts at full strength."""
    model, adapter = rig
    positive, negative = wan_models.random_text_cond(1), wan_models.random_text_cond(2)
    (hooks,) = _node("CreateHookLoraModelOnly").create_hook_model_only(LORA_NAME, 1.0)
    (keyframes,) = _node("CreateHookKeyframe").create_hook_keyframe(1.0, 0.75)
    (hooks,) = _node("SetHookKeyframes").set_hook_keyframes(hooks, keyframes)
    one_keyframe = _ksampler(model, *hooked(positive, negative, hooks), 8, "euler")
    ours = _ksampler(apply_sia(model, adapter, 1.0, 0.75)[0], positive, negative, 8, "euler")
    every_step = _ksampler(apply_sia(model, adapter, 1.0, 0.0)[0], positive, negative, 8, "euler")
    plain = _ksampler(model, positive, negative, 8, "euler")
    effect = (ours - plain).abs().max()
    assert (one_keyframe - ours).abs().max() > 1e-2 * effect
    assert (one_keyframe - every_step).abs().max() < 1e-3 * (every_step - plain).abs().max()
