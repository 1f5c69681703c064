"""The exception classes of the face stack.

Every problem a user can cause (missing or corrupt model files, images without a
usable face, wrong tensor shapes) is raised as :class:`FaceStackError` with a
message that names the input or file and says what to do about it.
"""


class FaceStackError(ValueError):
    """A user-fixable problem with face models or face images."""


class ModelPackMissingError(FaceStackError):
    """A face model pack is in none of the folders looked in. ``summary`` says where it was looked for,
    ``expected`` is the folder it belongs in; the message adds what to do."""

    def __init__(self, summary: str, advice: str, expected: str):
        super().__init__(f"{summary}\n{advice}")
        self.summary, self.expected = summary, expected
