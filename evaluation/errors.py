"""The exception class of identity evaluation."""


class EvaluationError(ValueError):
    """A user-fixable problem with the inputs of a scoring run (images, models, files); the message names the
    input and says what to do."""
