"""The noise prior and the face detail pass under AnimateDiff-Evolved's sampling, with an SD1.5-size
random checkpoint and a random AnimateLCM-layout motion model, sampled in context windows.

Runs where AnimateDiff-Evolved is installed in the host (COMFYUI_ROOT pointing at a modern ComfyUI with
it in custom_nodes); skipped otherwise.
"""
import math

import pytest
import torch

import comfy.sample
import comfy.samplers
import nodes
from comfyui_personalvideo.nodes.face_detail import FaceDetailPass
from comfyui_personalvideo.nodes.noise_prior import NoisePriorModel
from comfyui_personalvideo.noise_prior import correlate_frames
from comfyui_personalvideo.sia import apply_sia

import full_models
from face_fixtures import centre_faces, tiny_onnx  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.animatediff]

if not full_models.has_animatediff_evolved():
    pytest.skip("AnimateDiff-Evolved is not installed in this ComfyUI host", allow_module_level=True)

FRAMES, CONTEXT = 8, 4  # two context windows (overlap 1): frames 0-3 and 3-6/4-7 are sampled apart


@pytest.fixture(scope="module")
def animated(sd15_checkpoint, animatelcm_motion_model, make_adapter):
    model, clip, vae = full_models.load_random_checkpoint(sd15_checkpoint)
    with torch.inference_mode():
        (context,) = nodes.NODE_CLASS_MAPPINGS["ADE_StandardStaticContextOptions"]().create_options(
            context_length=CONTEXT, context_overlap=1)
        (ad_model,) = nodes.NODE_CLASS_MAPPINGS["ADE_AnimateDiffLoaderGen1"]().load_mm_and_inject_params(
            model, "AnimateLCM_random.safetensors", "lcm avg(sqrt_linear,linear)", context_options=context)[:1]
        (pos,) = nodes.CLIPTextEncode().encode(clip, "embedding:someone person walking")
        (neg,) = nodes.CLIPTextEncode().encode(clip, "")
    adapter = make_adapter(model, seed=2, std=0.05, name="magicme")
    identity_model = apply_sia(ad_model, adapter, 1.0, 0.75)[0]
    return identity_model, pos, neg, vae


def _first_x(model, pos, neg, noise, seed):
    """The latent the sampler starts from (recorded by a one-step Euler sampler) and the sampled result."""
    seen = {}

    def euler_once(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        seen["x"] = x.detach().clone()
        denoised = model_k(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))
        return denoised

    sampler = comfy.samplers.KSAMPLER(euler_once)
    latent = torch.zeros(FRAMES, 4, 8, 8)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "sgm_uniform", 4)
    with torch.inference_mode():
        out = comfy.sample.sample_custom(model, noise, 1.0, sampler, sigmas, pos, neg, latent, seed=seed)
    return seen["x"].cpu(), out


def test_noise_prior_spans_the_whole_video_through_context_windows(animated):
    model, pos, neg, _ = animated
    seed, gamma = 3, 0.9
    iid = comfy.sample.prepare_noise(torch.zeros(FRAMES, 4, 8, 8), seed)
    x_plain, _ = _first_x(model, pos, neg, iid, seed)
    (prior_model,) = NoisePriorModel().apply(model, gamma)
    x_prior, out = _first_x(prior_model, pos, neg, iid, seed)
    # what the sampler starts from is the host's start for the prior's noise of the whole video
    assert torch.allclose(x_prior, correlate_frames(x_plain, gamma), rtol=1e-5, atol=1e-4)
    z = (x_prior / x_prior.reshape(FRAMES, -1).std(1)[:, None, None, None]).reshape(FRAMES, -1).double()
    corr = torch.corrcoef(z)
    n = z.shape[1]
    for m in range(FRAMES - 1):  # frames 3 and 4 lie in different context windows
        assert abs(corr[m, m + 1] - gamma) < 5 * (1 - gamma ** 2) / math.sqrt(n) + 0.02
    assert abs(corr[0, FRAMES - 1] - gamma ** (FRAMES - 1)) < 5 / math.sqrt(n)
    assert torch.isfinite(out).all()
    # gamma 0: the same run as without the node
    (off,) = NoisePriorModel().apply(model, 0.0)
    assert torch.equal(_first_x(off, pos, neg, iid, seed)[1], _first_x(model, pos, neg, iid, seed)[1])


def test_face_detail_pass_runs_the_face_video_through_the_motion_model(animated, centre_faces):
    model, pos, neg, vae = animated
    (prior_model,) = NoisePriorModel().apply(model, 0.15)
    video = torch.rand(FRAMES, 96, 96, 3, generator=torch.Generator().manual_seed(4))
    video[5] = 0.5  # no face there
    motion_calls = {"n": 0}
    mm_module = __import__(full_models._ade_module_name() + ".animatediff.motion_module_ad", fromlist=["x"])

    def count(module, inputs, output):
        motion_calls["n"] += int(isinstance(module, mm_module.VanillaTemporalModule))

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        with torch.inference_mode():
            out, masks, preview, summary = FaceDetailPass().run(
                video, centre_faces, prior_model, pos, neg, vae, seed=1, steps=4, cfg=1.0, sampler_name="lcm",
                scheduler="sgm_uniform", denoise=0.8, working_size=64, padding=0.0, mask_feather=0.15,
                smoothing=2.0, max_gap=0)
    finally:
        handle.remove()
    assert motion_calls["n"] > 0  # the motion model took part in the re-denoise
    assert "7 of 8 frames" in summary and "1 without a face passed through" in summary
    assert torch.equal(out[5], video[5]) and masks[5].max() == 0
    outside = masks == 0
    assert torch.equal(out[outside], video[outside])
    assert all(not torch.equal(out[i], video[i]) for i in range(FRAMES) if i != 5)
    assert torch.isfinite(out).all() and preview.shape == video.shape
