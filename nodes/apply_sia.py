"""Node: Apply SIA at Late Steps."""
from ..sia import apply_sia
from ..sia.adapter import DEFAULT_START_PERCENT
from ..sia.patch import STRENGTH_RANGE

CATEGORY = "PersonalVideo"


class ApplySIALateSteps:
    DESCRIPTION = (
        "Applies a Spatial Identity Adapter to a copy of the MODEL, acting only in the late denoising steps: "
        "the early steps lay out motion and composition untouched, the late ones sharpen the identity. "
        "The incoming MODEL is not changed."
    )
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("A copy of the MODEL with the adapter in its spatial self-attention (Wan: its joint "
                       "space-time self-attention), gated to the late steps.",)

    @classmethod
    def INPUT_TYPES(cls):
        lo, hi = STRENGTH_RANGE
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An SD1.5-family MODEL, with or without an AnimateDiff motion model, or a "
                                            "core Wan 2.1 / 2.2 MODEL (for Wan 2.2 A14B: the low-noise expert)."}),
                "sia_adapter": ("SIA_ADAPTER", {"tooltip": "From 'Load SIA Adapter' or 'Train PersonalVideo Identity'."}),
                "strength": ("FLOAT", {
                    "default": 1.0, "min": lo, "max": hi, "step": 0.05,
                    "tooltip": "How strongly the identity is applied. 1.0 is what it was trained with; "
                               "lower it if faces look overcooked, raise it a little if the likeness is weak."}),
                "start_percent": ("FLOAT", {
                    "default": DEFAULT_START_PERCENT, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Where in the model's noise schedule the adapter switches on (0 = full noise, "
                               "1 = clean): a step is adapted when the noise level it starts from is at or past "
                               "this point; the step that finishes denoising counts as 1. 0.75 = the last "
                               "quarter (the paper's best: keeps motion and prompt following); 0 = every step; "
                               "1 = only the final step. The same in split, two-pass and low-denoise runs."}),
            },
            "optional": {
                "end_percent": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Where the adapter switches off again, on the same scale as start_percent "
                               "(at least start_percent). 1.0 = on to the final step."}),
                "mask": ("MASK", {
                    "tooltip": "Optional: where in the picture this identity goes (white = this person). One mask "
                               "for every frame, or one per frame of the video; any size (stretched to the "
                               "latent), soft edges blend. Stack two Apply nodes with two adapters and two masks "
                               "for two people. Empty: the adapter acts on the whole picture."}),
            },
        }

    def apply(self, model, sia_adapter, strength, start_percent, end_percent=1.0, mask=None):
        patched, _, _ = apply_sia(model, sia_adapter, strength, start_percent, end_percent, mask=mask)
        return (patched,)


NODES = (("PV_ApplySIALateSteps", ApplySIALateSteps, "Apply SIA at Late Steps"),)
