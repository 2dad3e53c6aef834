"""User-facing errors.

Anything a user can get wrong (a file, a name, an argument) raises :class:`NasError`. The
``nas`` command prints its message on one line and exits non-zero; Python callers can catch
it as a ``ValueError``.
"""
from __future__ import annotations


class NasError(ValueError):
    """A mistake in user input; the message says what is wrong and what to do.

    Raised in a DataLoader worker, it reaches the main process re-created from a message with
    the worker's traceback in front; that is cut back to the original line here, so the
    command still ends in one line.
    """

    def __init__(self, message: str) -> None:
        if message.startswith("Caught ") and "Traceback" in message:
            message = message.rstrip().rsplit("\n", 1)[-1].partition(": ")[2] or message
        super().__init__(message)


class EchoedError(NasError):
    """An error another process of the same search has printed already (rank 0 of a data-parallel
    search, or the Ray job that ran the search): the ``nas`` command exits with 2 and prints nothing."""

    quiet = True


class TrialDiverged(RuntimeError):
    """Training produced a NaN or infinite loss (any task): a search records the trial as
    failed and goes on; a single run stops with this message."""
