"""User-facing errors: every failure a user can fix is one of these, with the fix in the message.

The CLI turns a ``TextgenError`` into one line on stderr and exit code 1; anything else is a bug
and shows a traceback.
"""


class TextgenError(Exception):
    """A problem the user can act on. ``str(err)`` is the whole message, one line."""

    exit_code = 1


class CorpusError(TextgenError):
    """The input text cannot be read, decoded or used for training."""


class ConfigError(TextgenError):
    """A config file or value is invalid."""


class RunError(TextgenError):
    """A run folder is missing, incomplete, incompatible, or would be overwritten."""


class PrimeError(TextgenError):
    """The prime text cannot be fed to the model (characters outside the vocabulary)."""


class TrainingDiverged(TextgenError):
    """Loss became NaN/inf; the last good checkpoint is kept."""

    exit_code = 3
