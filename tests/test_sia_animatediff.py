"""The adapter under AnimateDiff-Evolved's sampling, with a random AnimateLCM-layout motion model.

Runs where AnimateDiff-Evolved is installed in the host (e.g. COMFYUI_ROOT pointing at a
modern ComfyUI with the pack in its custom_nodes); skipped otherwise. Uses SD1.5-size random
weights: AnimateDiff motion models only fit SD1.5 widths.
"""
import os

import pytest
import torch

import nodes
from comfyui_personalvideo.sia import AdapterInfo, SIAAdapter, apply_sia, discover_targets

import full_models
import sampling

pytestmark = [pytest.mark.slow, pytest.mark.animatediff]

if not full_models.has_animatediff_evolved():
    pytest.skip("AnimateDiff-Evolved is not installed in this ComfyUI host", allow_module_level=True)


@pytest.fixture(scope="module")
def animated(sd15_checkpoint, animatelcm_motion_model, make_adapter):
    model, clip, vae = full_models.load_random_checkpoint(sd15_checkpoint)
    with torch.inference_mode():
        (ad_model,) = nodes.NODE_CLASS_MAPPINGS["ADE_AnimateDiffLoaderGen1"]().load_mm_and_inject_params(
            model, "AnimateLCM_random.safetensors", "lcm avg(sqrt_linear,linear)")[:1]
        (pos,) = nodes.CLIPTextEncode().encode(clip, "a person walking")
        (neg,) = nodes.CLIPTextEncode().encode(clip, "")
    adapter = make_adapter(model, seed=2, std=0.05, name="ade")
    return model, ad_model, pos, neg, adapter, clip, vae


def _sample(model, pos, neg):
    with torch.inference_mode():
        return sampling.sample(model, pos, neg, steps=4, cfg=1.0, frames=8, size=64, seed=4)


def test_motion_model_acts_and_adapter_changes_only_the_last_step(animated):
    plain, ad_model, pos, neg, adapter = animated[:5]
    patched_calls = {"target": 0, "motion": 0, "motion_patched": 0}

    def hook(module, inputs, output):
        if not isinstance(module, torch.nn.Linear):
            return
        qualname = type(module).__module__
        if "AnimateDiff" in qualname or "animatediff" in qualname or getattr(module, "_pv_motion", False):
            patched_calls["motion"] += 1
            patched_calls["motion_patched"] += int("forward" in module.__dict__)
        elif "forward" in module.__dict__:
            patched_calls["target"] += 1

    # tag every Linear that lives inside a motion module once they are injected
    def tag(module, inputs):
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                m._pv_motion = True

    mm_cls = [c for n, c in vars(__import__(full_models._ade_module_name() + ".animatediff.motion_module_ad",
                                              fromlist=["x"])).items() if n == "VanillaTemporalModule"][0]
    handles = [torch.nn.modules.module.register_module_forward_pre_hook(
        lambda m, i: tag(m, i) if isinstance(m, mm_cls) else None),
        torch.nn.modules.module.register_module_forward_hook(hook)]
    try:
        _, no_motion = _sample(plain, pos, neg)
        _, motion = _sample(ad_model, pos, neg)
        _, both = _sample(apply_sia(ad_model, adapter, 1.0, 0.75)[0], pos, neg)
    finally:
        for h in handles:
            h.remove()
    assert not torch.equal(no_motion[0], motion[0])                       # the motion model takes part
    assert all(torch.equal(a, b) for a, b in zip(motion[:3], both[:3]))   # adapter off on steps 0-2
    assert not torch.equal(motion[3], both[3])                            # on at the last step
    assert patched_calls["motion"] > 0 and patched_calls["motion_patched"] == 0
    assert patched_calls["target"] > 0


def test_adapter_applied_before_the_motion_model_works_too(animated):
    plain, ad_model, pos, neg, adapter = animated[:5]
    with torch.inference_mode():
        sia_first = apply_sia(plain, adapter, 1.0, 0.75)[0]
        (both,) = nodes.NODE_CLASS_MAPPINGS["ADE_AnimateDiffLoaderGen1"]().load_mm_and_inject_params(
            sia_first, "AnimateLCM_random.safetensors", "lcm avg(sqrt_linear,linear)")[:1]
    _, motion = _sample(ad_model, pos, neg)
    _, adapted = _sample(both, pos, neg)
    assert all(torch.equal(a, b) for a, b in zip(motion[:3], adapted[:3]))
    assert not torch.equal(motion[3], adapted[3])


def test_training_step_gradient_reaches_the_adapter_through_the_motion_modules(animated):
    """Issue 4: the trainer's few-step sampler under AnimateDiff-Evolved: the last step runs with the UNet's
    layers and the injected motion modules checkpointed (they are recomputed during backward), its gradient
    flows back through the motion modules into the adapter; earlier steps carry none; afterwards no module
    keeps a checkpointing forward."""
    from comfyui_personalvideo.training import few_step_sampler

    plain, ad_model, pos, neg, _ = animated[:5]
    found = discover_targets(plain.model.diffusion_model)
    adapter = SIAAdapter.initialise(found.targets, rank=4, seed=5, info=AdapterInfo(name="trainable"))
    mm_module = __import__(full_models._ade_module_name() + ".animatediff.motion_module_ad", fromlist=["x"])
    phase = {"now": "sampling"}
    counts = {"forward": 0, "forward_with_grad": 0, "recomputed": 0, "backward": 0, "injected": 0,
              "injected_checkpointed": 0}

    def hook(module, inputs, output):
        if phase["now"] == "backward":
            # checkpointing's recomputation runs each motion module's forward again (up to the last tensor
            # backward needs), which runs its temporal transformer block; the region itself is re-entered
            # through its forward, not through its hooks
            counts["recomputed"] += int(isinstance(module, mm_module.TemporalTransformerBlock))
            return
        if not isinstance(module, mm_module.VanillaTemporalModule):
            return
        counts["forward"] += 1
        if torch.is_tensor(output) and output.requires_grad:
            counts["forward_with_grad"] += 1
            output.register_hook(lambda g: counts.__setitem__("backward", counts["backward"] + int(g.abs().sum() > 0)))

    def last_step(denoised):
        motion = [m for m in patched.model.diffusion_model.modules() if isinstance(m, mm_module.VanillaTemporalModule)]
        counts["injected"] = len(motion)
        counts["injected_checkpointed"] = sum(getattr(m.forward, "_pv_checkpointing", False) for m in motion)
        phase["now"] = "backward"
        denoised.float().pow(2).mean().backward()
        phase["now"] = "after"

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        with torch.inference_mode():
            patched = apply_sia(ad_model, adapter, 1.0, start_percent=1.0)[0]
            sigmas = few_step_sampler.lcm_schedule(patched, 4)
        sampler = few_step_sampler.FewStepTrainingSampler(last_step, torch.Generator().manual_seed(1))
        with torch.inference_mode(False):
            noise = torch.randn((8, 4, 8, 8), generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            few_step_sampler.run_few_steps(patched, sampler, sigmas, pos, neg, noise, 0)
    finally:
        handle.remove()
    assert len(sampler.step_outputs) == 4
    # AnimateLCM layout: 8 down + 12 up motion modules, all inside checkpointed regions during the gradient step
    assert counts["injected"] == 20 and counts["injected_checkpointed"] == 20
    assert counts["forward_with_grad"] == 20, "the motion modules did not all run on the gradient step"
    # 4 steps with cfg 1 = 4 model evaluations: only the last one builds a graph
    assert counts["forward"] == 4 * counts["forward_with_grad"]
    assert counts["recomputed"] == 20, "backward did not recompute the motion modules (not checkpointed)"
    assert counts["backward"] > 0, "no gradient flowed back through a motion module"
    assert not [n for n, m in plain.model.diffusion_model.named_modules()
                if getattr(m.forward, "_pv_checkpointing", False)]
    # `up` starts at zero, so its gradient is what a first optimiser step would use. Every layer gets one,
    # except q and k of the middle block: at 64 px its attention sees a single token (softmax of one
    # score is 1), so q and k cannot matter there.
    with_grad = {n for n, p in adapter.up.items() if p.grad is not None and float(p.grad.abs().sum()) > 0}
    assert set(adapter.up) - with_grad == {"middle_block.1.transformer_blocks.0.attn1.to_q",
                                           "middle_block.1.transformer_blocks.0.attn1.to_k"}


def test_checkpointing_under_animatediff_evolved_gives_the_same_gradients(animated):
    """With the motion modules (and AnimateDiff-Evolved's frame-aware GroupNorm, which is on only during the
    model call) the checkpointed gradient step gives the adapter the same gradients as the plain one."""
    from comfyui_personalvideo.training import few_step_sampler

    plain, ad_model, pos, neg, _ = animated[:5]
    found = discover_targets(plain.model.diffusion_model)
    grads = []
    for checkpointing in (False, True):
        adapter = SIAAdapter.initialise(found.targets, rank=4, seed=5, info=AdapterInfo(name="compare"))

        def last_step(denoised):
            denoised.float().pow(2).mean().backward()

        with torch.inference_mode():
            patched = apply_sia(ad_model, adapter, 1.0, start_percent=1.0)[0]
            sigmas = few_step_sampler.lcm_schedule(patched, 2)
        sampler = few_step_sampler.FewStepTrainingSampler(last_step, torch.Generator().manual_seed(1),
                                                          gradient_checkpointing=checkpointing)
        with torch.inference_mode(False):
            noise = torch.randn((8, 4, 8, 8), generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            few_step_sampler.run_few_steps(patched, sampler, sigmas, pos, neg, noise, 0)
        assert (sampler.checkpointed_regions > 0) == checkpointing
        # what the motion modules made in the steps before (in inference mode) needed no per-operation aliasing
        assert not sampler.per_operation_fallback
        grads.append({p: adapter.up[p].grad.clone() for p in adapter.paths})
    assert sum(float(g.abs().sum()) for g in grads[1].values()) > 0
    for path in grads[0]:
        torch.testing.assert_close(grads[1][path], grads[0][path], msg=path)


def _ade(name):
    return __import__(full_models._ade_module_name() + ".animatediff." + name, fromlist=["x"])


def _with_context_options(model, context_length, use_on_equal_length=False):
    """A clone of ``model`` with AnimateDiff-Evolved's standard static context options, set the way its loader
    sets them (the same motion model, not loaded again)."""
    context = nodes.NODE_CLASS_MAPPINGS["ADE_StandardStaticContextOptions"]().create_options(
        context_length, 4, use_on_equal_length=use_on_equal_length)[0]
    clone = model.clone()
    helper = _ade("model_injection").ModelPatcherHelper(clone)
    params = helper.get_params().clone()
    params.set_context(context)
    helper.set_params(params)
    return clone


def _ade_accepts(model, frames):
    """AnimateDiff-Evolved's own verdict, from the function that raises when sampling starts."""
    mi, sampling = _ade("model_injection"), _ade("sampling")
    helper = mi.ModelPatcherHelper(model)
    params = helper.get_params().clone()
    params.full_length = frames
    try:
        sampling.apply_params_to_motion_models(helper, params, {})
        return True
    except ValueError:
        return False


def test_trainer_takes_the_frame_counts_animatediff_evolved_takes(animated):
    """Issue 4: frame counts the motion model rejects. The rule, read from AnimateDiff-Evolved v1.5.6: at
    most the motion model's encoding length (64 for AnimateLCM) without context options; with them, longer
    videos are sampled in windows of context_length frames, and the window must fit instead."""
    from comfyui_personalvideo.training import motion_model
    from comfyui_personalvideo.training.errors import TrainingError

    plain, ad_model = animated[:2]
    assert [(m.name, m.max_frames) for m in motion_model.motion_limits(ad_model)] == [
        ("AnimateLCM_random.safetensors", 64)]
    assert motion_model.motion_limits(plain) == []
    motion_model.check_frames(plain, 500)                    # no motion model, no limit
    windows16, windows80 = _with_context_options(ad_model, 16), _with_context_options(ad_model, 80)
    equal65 = _with_context_options(ad_model, 65, use_on_equal_length=True)
    cases = [(ad_model, 16, True), (ad_model, 64, True), (ad_model, 65, False), (windows16, 65, True),
             (windows16, 128, True), (windows80, 64, True), (windows80, 80, False), (windows80, 100, False),
             (equal65, 64, True), (equal65, 65, False)]
    for model, frames, accepted in cases:
        try:
            motion_model.check_frames(model, frames)
            ours = True
        except TrainingError:
            ours = False
        assert (ours, _ade_accepts(model, frames)) == (accepted, accepted), (frames, accepted)
    with pytest.raises(TrainingError, match="windows of 80 frames, but the motion model .* takes at most 64 "
                                            "frames at once. Set context_length in the context options to 64"):
        motion_model.check_frames(windows80, 100)


def test_trainer_refuses_too_many_frames_before_any_work(animated):
    from comfyui_personalvideo.training.identity_training import train_identity
    from comfyui_personalvideo.training import identity_files
    from comfyui_personalvideo.training.errors import TrainingError

    _, ad_model, _, _, _, clip, vae = animated
    photo = torch.zeros(1, 64, 64, 3)
    with torch.inference_mode(), pytest.raises(
            TrainingError, match=r"frames is 65, but the motion model 'AnimateLCM_random.safetensors' attached to "
                                 r"the MODEL takes at most 64 frames at once. Set frames to 64 or less .* context "
                                 r"options"):
        # face_analysis None: the check comes before the face stack, the textual inversion or any sampling
        train_identity(ad_model, clip, vae, photo, None, "too_long", "man", "{token} {class_word}", frames=65,
                       width=64, height=64)
    assert not [p for p in identity_files.identity_paths("too_long").values() if os.path.exists(p)]


def test_token_stage_leaves_the_motion_model_out(animated):
    """Stage 1 trains on single photos: with AnimateLCM attached to the MODEL (and injected into the UNet
    because that MODEL was loaded last), no motion module may see the batch of photos as a video."""
    import comfy.model_management
    from comfyui_personalvideo.training import motion_model
    from comfyui_personalvideo.training import textual_inversion as ti

    _, ad_model, _, _, _, clip, vae = animated
    mm_module = _ade("motion_module_ad")
    with torch.inference_mode():
        comfy.model_management.load_models_gpu([ad_model])
    injected = [m for m in ad_model.model.diffusion_model.modules() if isinstance(m, mm_module.VanillaTemporalModule)]
    assert len(injected) == 20                       # the situation to guard against
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: calls.append(m) if isinstance(m, mm_module.VanillaTemporalModule) else None)
    try:
        with torch.inference_mode():
            _, _, losses = ti.train_token(ad_model, clip, vae, torch.rand(2, 64, 64, 3), "man",
                                          ti.TISettings(steps=1, batch_size=3))
    finally:
        handle.remove()
    assert calls == [] and len(losses) == 1 and losses[0] == losses[0]
    assert motion_model.motion_models(ad_model)        # the user's MODEL keeps its motion model


def test_reuse_follows_the_motion_model_and_its_beta_schedule(animated, tmp_path_factory):
    """An identity trained through AnimateLCM (with its beta schedule) is handed back by reuse for that MODEL
    only: not with another motion model's weights, another beta schedule, or a model_sampling patch on top,
    whose training samples would have been other videos. The MODEL's UNet, loaded with the motion modules
    still injected after sampling, fingerprints as before."""
    import comfy_extras.nodes_model_advanced as advanced
    import folder_paths

    import face_fixtures as ff
    from comfyui_personalvideo.training.errors import TrainingError
    from comfyui_personalvideo.training.identity_training import train_identity

    plain, ad_model, _, _, _, clip, vae = animated
    analysis = ff.centre_face_analysis(tmp_path_factory.mktemp("insightface-ade"),
                                       encoder_cache=tmp_path_factory.mktemp("enc-ade"))
    image = ff.photo_image("astronaut").movedim(-1, 1)
    photo = torch.nn.functional.interpolate(image, size=(64, 64), mode="area").movedim(1, -1).contiguous()
    other_file = os.path.join(folder_paths.get_folder_paths("animatediff_models")[0], "AnimateLCM_other.safetensors")
    with torch.inference_mode():
        full_models.save_animatelcm_motion_model(other_file, seed=12)
    loader = nodes.NODE_CLASS_MAPPINGS["ADE_AnimateDiffLoaderGen1"]()

    def attach(motion_file, schedule):
        with torch.inference_mode():
            return loader.load_mm_and_inject_params(plain, motion_file, schedule)[0]

    def train(model):
        with torch.inference_mode():
            return train_identity(model, clip, vae, photo, analysis, "ade_reuse", "man", "{token} {class_word} smiling",
                                  ti_steps=1, ti_batch_size=1, sia_iterations=1, frames=2, width=64, height=64)

    assert not train(ad_model)["reused"]
    assert train(attach("AnimateLCM_random.safetensors", "lcm avg(sqrt_linear,linear)"))["reused"]
    with pytest.raises(TrainingError, match=r"the MODEL \(another motion model\)"):
        train(attach("AnimateLCM_other.safetensors", "lcm avg(sqrt_linear,linear)"))
    with pytest.raises(TrainingError, match=r"the MODEL \(another noise schedule"):
        train(attach("AnimateLCM_random.safetensors", "sqrt_linear (AnimateDiff)"))
    with torch.inference_mode():
        (patched,) = advanced.ModelSamplingDiscrete().patch(ad_model, "lcm", False)
    with pytest.raises(TrainingError, match=r"the MODEL \(another noise schedule"):
        train(patched)
