"""The trainer's user-facing error."""


class TrainingError(ValueError):
    """A problem with the trainer's inputs or run, worded for the user (what is wrong and what to do)."""

