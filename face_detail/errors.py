"""The error type of the face detail pass."""


class FaceDetailError(ValueError):
    """A face detail input a user can fix (not a video of frames, a setting out of range)."""
