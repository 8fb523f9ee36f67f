"""User-facing errors: every failure a user can fix is one of these, with the fix in the message.

The CLI turns a ``TextgenError`` into one line on stderr and exit code 1; anything else is a bug
and shows a traceback.
"""


class TextgenError(Exception):
    """A problem the user can act on. ``str(err)`` is the whole message, one line, in terms of
    the library; ``cli_hint``, when set, is the command-line way to act on it (the CLI adds it)."""

    exit_code = 1
    cli_hint: str | None = None

    def __init__(self, message: str, cli_hint: str | None = None):
        super().__init__(message)
        if cli_hint is not None:
            self.cli_hint = cli_hint


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


class DiskFull(RunError):
    """A write failed for lack of space; what was there before is intact."""

    exit_code = 4
