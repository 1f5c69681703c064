"""The training sampler: a few LCM steps through ComfyUI's own sampling machinery.

Used as the ``sampler`` of ``comfy.sample.sample_custom`` so that everything the
user's MODEL brings (AnimateDiff-Evolved's motion modules and beta schedule,
ControlNet, LoRAs, hooks) takes part exactly as when generating.  Steps
0..n-2 run without gradient (the SIA adapter, attached with its gate set to the
last step, is off there); the last step runs with gradient and the adapter on,
and hands its denoised latent to ``last_step`` (decode, loss, backward, optimiser
step) while the model is still loaded and patched for sampling.

Models and the gradient window: the no-grad steps use the loaded models as
they are, under inference mode as plain sampling runs them (outside it every
operation pays for version counters and view tracking: several percent of a
step on small models), and hand the gradient step a normal copy of their
result.  Before the gradient step the sampler has ComfyUI's memory manager
load what the step needs (``load_first``: the sampled MODEL and the VAE that
decodes the trained frame), and only then opens the gradient window
(:mod:`.inference_tensors`), where nothing is loaded, swapped or copied: the
weights are read through zero-copy aliases, so whatever the manager does is
never undone.

Memory of the gradient step: nothing is kept from the no-grad steps; the
gradient step runs with the UNet's layers (and the injected motion modules,
and the VAE decoder's blocks of ``extra_modules``) under gradient
checkpointing (:mod:`.checkpointing`, taken out again when the step ends) and
under the run's precision (:mod:`.precision`: autocast, where the run uses it, around the model call
only; ``last_step`` enters it itself for the decode).

Update between steps: ``step(x, denoised, sigma, sigma_next, noise_like)``; by default LCM's
``x = denoised + sigma_next * noise``, noise from a seeded CPU generator (the same on every device);
:func:`euler_step` for flow-matching models (Wan), which draws no noise.
"""
from __future__ import annotations

import contextlib

import comfy.samplers
import torch

from .checkpointing import checkpointed, regions_of
from .inference_tensors import gradient_window, normal_tensors, with_fallback


def lcm_step(x, denoised, sigma, sigma_next, noise_like):
    """LCM's update: the denoised latent noised again to the next level."""
    return denoised + sigma_next * noise_like(denoised)


def euler_step(x, denoised, sigma, sigma_next, noise_like):
    """Euler's update along the model's direction ``(x - denoised) / sigma`` (core's ``euler`` sampler without
    churn): deterministic, the sampler Wan's few-step schedules use."""
    return x + (x - denoised) / sigma * (sigma_next - sigma)


class FewStepTrainingSampler(comfy.samplers.Sampler):
    def __init__(self, last_step, generator: torch.Generator, extra_modules=(), gradient_checkpointing=True,
                 autocast=None, load_first=(), between_steps=None, step=lcm_step, spared=()):
        self.last_step = last_step          # callable(denoised latent with grad) -> None
        self.generator = generator
        self.extra_modules = tuple(extra_modules)
        self.load_first = tuple(load_first)  # ModelPatchers loaded (with the sampled one) before the gradient step
        self.gradient_checkpointing = gradient_checkpointing
        self.spared = tuple(spared)          # layers left out of checkpointing (its partial choice)
        self.between_steps = between_steps or (lambda: None)   # e.g. the cancel check
        self.step = step                   # the update between steps (lcm_step, euler_step)
        self.autocast = autocast or contextlib.nullcontext   # context factory for the gradient step's model call
        self.step_outputs = []             # denoised latent of every step (detached), for reports/tests
        self.checkpointed_regions = 0      # layers checkpointed in the gradient step (0: off)
        self.per_operation_fallback = False   # the gradient step had to alias every torch operation (slow)

    def _noise_like(self, x):
        return torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(x.device, x.dtype)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        base_model = model_wrap.inner_model
        model_sampling = base_model.model_sampling
        n = int(sigmas.shape[0]) - 1
        with normal_tensors():
            sigmas = sigmas.detach().clone()
            noise = noise.detach().clone()
            latent_image = torch.zeros_like(noise) if latent_image is None else latent_image.detach().clone()
            x = model_sampling.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
            s_in = x.new_ones([x.shape[0]])
            with torch.inference_mode():   # as plain sampling runs: no version counters, no view tracking
                for i in range(n - 1):
                    denoised = model_wrap(x, sigmas[i] * s_in, **extra_args)
                    self.step_outputs.append(denoised)
                    if callback is not None:
                        callback(i, denoised, x, n)
                    x = self.step(x, denoised, sigmas[i], sigmas[i + 1], self._noise_like)
                    self.between_steps()
            x = x.clone()   # a normal tensor: the gradient step's input
            if self.load_first:
                import comfy.model_management

                comfy.model_management.load_models_gpu(list(self.load_first))
            regions = regions_of(getattr(base_model, "diffusion_model", None), *self.extra_modules)
            with gradient_window(base_model, *self.extra_modules) as window:
                with torch.enable_grad(), checkpointed(regions, self.gradient_checkpointing, self.spared) as count:
                    self.checkpointed_regions = count

                    def gradient_pass():
                        with self.autocast():
                            return model_wrap(x, sigmas[n - 1] * s_in, **extra_args)
                    denoised = with_fallback(window, gradient_pass)
                    self.per_operation_fallback = window.fell_back
                    self.step_outputs.append(denoised.detach())
                    self.last_step(denoised)
                result = denoised.detach()
            if callback is not None:
                callback(n - 1, result, x, n)
            return model_sampling.inverse_noise_scaling(sigmas[-1], result)


def lcm_schedule(model, steps: int, scheduler: str = "sgm_uniform") -> torch.Tensor:
    """The sampler schedule of ``model`` (with any model_sampling patch, e.g. AnimateDiff-Evolved's)."""
    if hasattr(model, "get_model_object"):
        model_sampling = model.get_model_object("model_sampling")
    else:
        model_sampling = model.object_patches.get("model_sampling", model.model.model_sampling)
    if hasattr(comfy.samplers, "calculate_sigmas"):
        sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps)
    else:
        from types import SimpleNamespace

        sigmas = comfy.samplers.calculate_sigmas_scheduler(SimpleNamespace(model_sampling=model_sampling), scheduler, steps)
    with normal_tensors():
        return sigmas.detach().cpu().clone()


def run_few_steps(model, sampler, sigmas, positive, negative, noise, seed: int, cfg: float = 1.0):
    """One generation with ``sampler`` through comfy.sample.sample_custom (looked up now: packs wrap it), at
    guidance ``cfg`` (1.0: the positive prompt alone; above 1 the negative prompt is evaluated too, with
    gradient in the last step, as when generating)."""
    import comfy.sample

    latent = torch.zeros_like(noise)
    return comfy.sample.sample_custom(model, noise, float(cfg), sampler, sigmas, positive, negative, latent,
                                      callback=None, disable_pbar=True, seed=seed)
