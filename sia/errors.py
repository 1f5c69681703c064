"""The one error type the adapter code raises for anything a user can fix."""


class SIAError(ValueError):
    """A problem with an adapter file, a MODEL or a node input, worded for the user."""
