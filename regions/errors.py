"""The error type of the region mask nodes."""


class RegionError(ValueError):
    """A region input a user can fix (not a latent, a box outside the picture, too few people)."""
