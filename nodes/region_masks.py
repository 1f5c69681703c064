"""Nodes: simple region masks sized to the latent (left/right halves, a box)."""
from ..regions.simple import box_mask, halves, picture_size

CATEGORY = "PersonalVideo"
LATENT_TOOLTIP = "The latent you sample (e.g. 'Empty Latent Image'): the masks get its picture size."
FEATHER_TOOLTIP = ("Soft edge as a fraction of the picture's width (0 = hard edge): the adapters and the "
                   "host's mask conditioning blend across it.")


def _fraction(default, tooltip):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": tooltip})


class RegionHalves:
    DESCRIPTION = ("Two masks that split the picture into a left and a right part, sized to the latent: one per "
                   "person, for 'Apply SIA at Late Steps' (mask) and the host's ConditioningSetMask.")
    CATEGORY = CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = ("MASK", "MASK")
    RETURN_NAMES = ("left", "right")
    OUTPUT_TOOLTIPS = ("The left part (1 = inside).", "The right part; left + right = 1 everywhere.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT", {"tooltip": LATENT_TOOLTIP}),
            "split": _fraction(0.5, "Where the parts meet, as a fraction of the width (0.5 = the middle)."),
            "feather": _fraction(0.05, FEATHER_TOOLTIP),
        }}

    def make(self, latent, split, feather):
        height, width = picture_size(latent)
        return halves(height, width, split, feather)


class RegionBox:
    DESCRIPTION = "A box-shaped region mask sized to the latent, positions as fractions of the picture."
    CATEGORY = CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("1 inside the box, 0 outside, soft over the feather.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("LATENT", {"tooltip": LATENT_TOOLTIP}),
            "x": _fraction(0.0, "Left edge of the box, as a fraction of the width (0 = the left edge)."),
            "y": _fraction(0.0, "Top edge of the box, as a fraction of the height (0 = the top)."),
            "width": _fraction(0.5, "Width of the box, as a fraction of the picture's width."),
            "height": _fraction(1.0, "Height of the box, as a fraction of the picture's height."),
            "feather": _fraction(0.05, FEATHER_TOOLTIP),
        }}

    def make(self, latent, x, y, width, height, feather):
        picture_height, picture_width = picture_size(latent)
        return (box_mask(picture_height, picture_width, x, y, width, height, feather),)


NODES = (
    ("PV_RegionHalves", RegionHalves, "Region Masks: Left/Right Halves (PersonalVideo)"),
    ("PV_RegionBox", RegionBox, "Region Mask: Box (PersonalVideo)"),
)
