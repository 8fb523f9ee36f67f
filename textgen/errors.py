"""User-facing errors: every failure a user can fix is one of these, with the fix in the message.

The CLI turns a ``TextgenError`` into one line on stderr and exit code 1; anything else is a bug
and shows a traceback. A signal that stops a command is a ``Signalled`` (``handle_signals``
installs the handlers that raise it).
"""

import contextlib
import signal


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


class ServeError(TextgenError):
    """textgen serve cannot start (e.g. its port is taken)."""


class TrainingDiverged(TextgenError):
    """Loss became NaN/inf; the last good checkpoint is kept."""

    exit_code = 3


class DiskFull(RunError):
    """A write failed for lack of space; what was there before is intact."""

    exit_code = 4


class Signalled(BaseException):
    """SIGTERM or SIGINT, raised where the process was, so that what it was writing is cleaned
    up (temporary files removed) on the way out. A BaseException, as KeyboardInterrupt, so that
    no ``except Exception`` swallows it; the CLI exits 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


_RAISED: list[int] = []  # the signal whose Signalled the CLI's handler raised, if any


def signalled(signum: int) -> Signalled:
    """The Signalled to raise for ``signum``, remembered: a raise can be swallowed (a signal
    that lands while a Cython module is imported lazily, e.g. ``numpy.random``, is cleared by
    the module's start-up code), so long loops call ``check_signalled`` too."""
    _RAISED.append(signum)
    return Signalled(signum)


def check_signalled() -> None:
    """Raise again a Signalled that was raised once and swallowed (see ``signalled``)."""
    if _RAISED:
        raise Signalled(_RAISED[0])


@contextlib.contextmanager
def handle_signals(signals, handler):
    """Install ``handler`` for each of ``signals`` that the caller does not ignore (``nohup``
    ignores SIGHUP, a shell's background job SIGINT: they stay ignored), in the main thread
    only; the previous handlers are put back afterwards."""
    previous = {}
    for sig in signals:
        try:
            if signal.getsignal(sig) != signal.SIG_IGN:
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
