"""The 3D Gaussian noise prior: the distribution it draws from, gamma 0 = the host's own noise, and the
KSampler route (a MODEL copy) giving the sampler exactly the prior's noise for the sampler's seed."""
import math

import pytest
import torch

import comfy.sample
import nodes
from comfyui_personalvideo.nodes.noise_prior import NoisePriorModel, NoisePriorNoise
from comfyui_personalvideo.noise_prior import (CorrelatedNoise, NoisePriorError, correlate_frames,
                                               frame_covariance)
from comfyui_personalvideo.noise_prior.sampling_hook import OPTION_KEY

import tiny_models

pytestmark = pytest.mark.usefixtures("ample_free_memory")   # conftest.py says why

FRAMES, SHAPE = 8, (4, 64, 64)  # 16384 values per frame


def _noise(seed, gamma, frames=FRAMES, shape=SHAPE, **latent):
    (source,) = NoisePriorNoise().get_noise(seed, gamma)
    return source.generate_noise(dict(samples=torch.zeros(frames, *shape), **latent))


@pytest.mark.parametrize("gamma", [0.15, 0.5, 0.9])
def test_marginals_are_standard_normal_and_frames_correlate_as_gamma_to_the_distance(gamma):
    x = _noise(7, gamma).reshape(FRAMES, -1).double()
    n = x.shape[1]
    # per frame: mean 0 and variance 1 within 5 standard errors of the sample size
    assert x.mean(1).abs().max() < 5 / math.sqrt(n)
    assert (x.var(1) - 1).abs().max() < 5 * math.sqrt(2 / n)
    # a normal's quartiles: +-0.6745
    q = torch.quantile(x[0].float(), torch.tensor([0.25, 0.75])).double()
    assert torch.allclose(q, torch.tensor([-0.6745, 0.6745], dtype=torch.float64), atol=0.03)
    corr = torch.corrcoef(x)
    expected = frame_covariance(FRAMES, gamma)
    # standard error of a sample correlation rho over n pairs: (1 - rho^2) / sqrt(n)
    tolerance = 5 * (1 - expected ** 2) / math.sqrt(n) + 1e-6
    assert ((corr - expected).abs() <= tolerance).all(), (corr - expected).abs().max()
    assert corr[0, 1] > gamma - 5 / math.sqrt(n) and corr[0, FRAMES - 1] < corr[0, 1]


def test_gamma_zero_is_the_hosts_noise_for_the_seed_bit_for_bit():
    for seed in (0, 123456789, 2 ** 63 + 5):
        latent = torch.zeros(5, 4, 8, 8)
        assert torch.equal(_noise(seed, 0.0, 5, (4, 8, 8)), comfy.sample.prepare_noise(latent, seed))
        inds = [3, 4, 5, 6, 7]  # a latent taken from a batch: the host skips the noise of the earlier ones
        assert torch.equal(_noise(seed, 0.0, 5, (4, 8, 8), batch_index=inds),
                           comfy.sample.prepare_noise(latent, seed, inds))


def test_noise_node_matches_the_hosts_random_noise_object():
    custom = pytest.importorskip("comfy_extras.nodes_custom_sampler")
    if not hasattr(custom, "Noise_RandomNoise"):
        pytest.skip("this host has no NOISE objects (no SamplerCustomAdvanced)")
    latent = {"samples": torch.zeros(6, 4, 16, 16)}
    host = custom.Noise_RandomNoise(99)
    ours = CorrelatedNoise(99, 0.0)
    assert ours.seed == host.seed
    assert torch.equal(ours.generate_noise(latent), host.generate_noise(latent))


def test_prior_is_seeded_and_made_from_the_hosts_noise():
    a, b, c = _noise(3, 0.5, 4, (4, 8, 8)), _noise(3, 0.5, 4, (4, 8, 8)), _noise(4, 0.5, 4, (4, 8, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    z = comfy.sample.prepare_noise(torch.zeros(4, 4, 8, 8), 3)
    assert torch.equal(a[0], z[0])  # the first frame is the host's
    assert torch.allclose(a[1], 0.5 * z[0] + math.sqrt(0.75) * z[1])


def test_video_latents_correlate_along_time():
    z = torch.randn(2, 4, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    out = correlate_frames(z, 0.3)
    assert torch.equal(out[:, :, 0], z[:, :, 0])
    assert torch.allclose(out[:, :, 1], 0.3 * z[:, :, 0] + math.sqrt(0.91) * z[:, :, 1])


@pytest.mark.parametrize("gamma", [-0.1, 0.995, 1.0, "x"])
def test_gamma_outside_the_range_is_refused_with_the_range(gamma):
    with pytest.raises(NoisePriorError, match="gamma must be"):
        NoisePriorNoise().get_noise(0, gamma)
    with pytest.raises(NoisePriorError, match="gamma must be"):
        NoisePriorModel().apply(tiny_models.tiny_sd15_model(seed=0), gamma)


def _ksampler(model, cond, seed=11, add_noise=True, frames=4):
    pos, neg = cond
    latent = {"samples": torch.zeros(frames, 4, 8, 8)}
    with torch.inference_mode():
        if add_noise:
            return nodes.common_ksampler(model, seed, 3, 2.0, "euler", "normal", pos, neg, latent)[0]["samples"]
        return nodes.common_ksampler(model, seed, 3, 2.0, "euler", "normal", pos, neg, latent,
                                     disable_noise=True, start_step=0, last_step=3, force_full_denoise=True)[0]["samples"]


def test_ksampler_route_samples_from_the_prior_with_the_samplers_seed(tiny_model, conds):
    (patched,) = NoisePriorModel().apply(tiny_model, 0.6)
    assert OPTION_KEY not in tiny_model.model_options          # the MODEL connected is not changed
    assert not tiny_model.model_options.get("transformer_options", {}).get("wrappers", {}).get("outer_sample", {})
    out = _ksampler(patched, conds)
    # the same run without the node, handed the prior's noise directly
    latent = torch.zeros(4, 4, 8, 8)
    prior = correlate_frames(comfy.sample.prepare_noise(latent, 11), 0.6)
    with torch.inference_mode():
        expected = comfy.sample.sample(tiny_model, prior, 3, 2.0, "euler", "normal", conds[0], conds[1], latent,
                                       seed=11)
    assert torch.equal(out, expected)
    assert not torch.equal(out, _ksampler(tiny_model, conds))


def test_ksampler_route_with_gamma_zero_or_without_noise_changes_nothing(tiny_model, conds):
    (off,) = NoisePriorModel().apply(tiny_model, 0.0)
    (on,) = NoisePriorModel().apply(tiny_model, 0.6)
    assert torch.equal(_ksampler(off, conds), _ksampler(tiny_model, conds))
    # KSamplerAdvanced with add_noise off: the sampler's zero noise stays zero
    assert torch.equal(_ksampler(on, conds, add_noise=False), _ksampler(tiny_model, conds, add_noise=False))


def test_model_route_and_noise_route_agree_in_sampler_custom_advanced(tiny_model, conds):
    custom = pytest.importorskip("comfy_extras.nodes_custom_sampler")
    if not hasattr(custom, "SamplerCustomAdvanced"):
        pytest.skip("this host has no SamplerCustomAdvanced (ComfyUI before mid 2024)")
    pos, neg = conds
    latent = {"samples": torch.zeros(4, 4, 8, 8)}

    def run(model, noise):
        (guider,) = custom.CFGGuider().get_guider(model, pos, neg, 2.0)
        (sampler,) = custom.KSamplerSelect().get_sampler("euler")
        (sigmas,) = custom.BasicScheduler().get_sigmas(model, "normal", 3, 1.0)
        with torch.inference_mode():
            return custom.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)[0]["samples"]

    (ours,) = NoisePriorNoise().get_noise(5, 0.4)
    (patched,) = NoisePriorModel().apply(tiny_model, 0.4)
    (host_noise,) = custom.RandomNoise().get_noise(5)
    assert torch.equal(run(tiny_model, ours), run(patched, host_noise))
    (off,) = NoisePriorNoise().get_noise(5, 0.0)
    assert torch.equal(run(tiny_model, off), run(tiny_model, host_noise))
