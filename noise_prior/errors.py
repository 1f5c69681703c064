"""The error type of the noise prior."""


class NoisePriorError(ValueError):
    """A noise prior input a user can fix (gamma out of range, a latent without frames)."""
