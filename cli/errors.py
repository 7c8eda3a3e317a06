"""The error type the command line turns into a one-line message and exit status 2."""


class CLIError(Exception):
    """A problem with the user's input or environment, worded for the user."""
