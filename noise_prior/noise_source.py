"""A NOISE object (the interface SamplerCustomAdvanced takes: ``seed`` and ``generate_noise(latent)``)
giving the host's own noise for the seed, correlated across the frames by the prior."""
from __future__ import annotations

from .correlation import check_gamma, correlate_frames


class CorrelatedNoise:
    """The host's noise for ``seed`` (``comfy.sample.prepare_noise``, honouring the latent's ``batch_index``
    as the host's RandomNoise does), made into the 3D Gaussian prior's noise with ``gamma``."""

    def __init__(self, seed: int, gamma: float):
        self.seed = int(seed)
        self.gamma = check_gamma(gamma)

    def generate_noise(self, input_latent: dict):
        import comfy.sample  # looked up at call time: some packs wrap it

        samples = input_latent["samples"]
        return correlate_frames(comfy.sample.prepare_noise(samples, self.seed, input_latent.get("batch_index")),
                                self.gamma)
