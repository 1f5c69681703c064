"""The one exception class of the face stack.

Every problem a user can cause (missing or corrupt model files, images without a
usable face, wrong tensor shapes) is raised as :class:`FaceStackError` with a
message that names the input or file and says what to do about it.
"""


class FaceStackError(ValueError):
    """A user-fixable problem with face models or face images."""
