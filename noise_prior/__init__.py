"""Magic-Me's 3D Gaussian noise prior: initial noise correlated across the frames of a video.

- :mod:`.correlation`: the prior itself (covariance gamma^|m-n| between frames m and n), made from
  independent noise, so gamma = 0 leaves the noise exactly as it was;
- :mod:`.noise_source`: a NOISE object for SamplerCustomAdvanced (the host's noise for the seed, correlated);
- :mod:`.sampling_hook`: a MODEL copy whose sampling correlates whatever noise the sampler made (KSampler,
  KSamplerAdvanced, SamplerCustom, SamplerCustomAdvanced).
"""
from .correlation import GAMMA_RANGE, correlate_frames, frame_covariance
from .errors import NoisePriorError
from .noise_source import CorrelatedNoise
from .sampling_hook import with_noise_prior

__all__ = ["GAMMA_RANGE", "CorrelatedNoise", "NoisePriorError", "correlate_frames", "frame_covariance",
           "with_noise_prior"]
