"""Nodes: the 3D Gaussian noise prior, as a NOISE (SamplerCustomAdvanced) and as a MODEL (KSampler)."""
from ..noise_prior import GAMMA_RANGE, CorrelatedNoise, with_noise_prior
from ..noise_prior.correlation import PAPER_GAMMA

CATEGORY = "PersonalVideo"
GAMMA_TOOLTIP = (f"Correlation between neighbouring frames' initial noise (frames m and n: gamma^|m-n|). "
                 f"0 = the host's ordinary noise (exactly); {PAPER_GAMMA} as in Magic-Me; higher = steadier "
                 f"motion of smaller amplitude.")


def _gamma_input():
    lo, hi = GAMMA_RANGE
    return ("FLOAT", {"default": PAPER_GAMMA, "min": lo, "max": hi, "step": 0.01, "tooltip": GAMMA_TOOLTIP})


class NoisePriorNoise:
    DESCRIPTION = (
        "Initial noise for SamplerCustomAdvanced with Magic-Me's 3D Gaussian noise prior: the host's own noise "
        "for the seed, correlated across the frames of the latent (its batch). gamma 0 gives exactly the noise "
        "of RandomNoise with the same seed."
    )
    CATEGORY = CATEGORY
    FUNCTION = "get_noise"
    RETURN_TYPES = ("NOISE",)
    RETURN_NAMES = ("noise",)
    OUTPUT_TOOLTIPS = ("For the noise input of SamplerCustomAdvanced (ComfyUI of mid 2024 or newer).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "noise_seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff,
                                       "control_after_generate": True,
                                       "tooltip": "The seed of the noise, as in RandomNoise."}),
                "gamma": _gamma_input(),
            }
        }

    def get_noise(self, noise_seed, gamma):
        return (CorrelatedNoise(noise_seed, gamma),)


class NoisePriorModel:
    DESCRIPTION = (
        "Magic-Me's 3D Gaussian noise prior for KSampler, KSamplerAdvanced and SamplerCustom: a copy of the MODEL "
        "whose sampling correlates the sampler's noise (made from the sampler's seed) across the frames of the "
        "latent, over the whole video (AnimateDiff-Evolved's context windows included). The MODEL you connect is "
        "not changed; gamma 0 samples exactly as without this node."
    )
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("A copy of the MODEL that samples from the noise prior; the seed is the sampler's.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The MODEL to sample with (with or without AnimateDiff, adapters, "
                                               "LoRAs)."}),
                "gamma": _gamma_input(),
            }
        }

    def apply(self, model, gamma):
        return (with_noise_prior(model, gamma),)


NODES = (
    ("PV_NoisePriorNoise", NoisePriorNoise, "3D Noise Prior (NOISE)"),
    ("PV_NoisePriorModel", NoisePriorModel, "3D Noise Prior for KSampler"),
)
