"""User-facing errors.

Anything a user can get wrong (a file, a name, an argument) raises :class:`NasError`. The
``nas`` command prints its message on one line and exits non-zero; Python callers can catch
it as a ``ValueError``.
"""
from __future__ import annotations


class NasError(ValueError):
    """A mistake in user input; the message says what is wrong and what to do."""


class TrialDiverged(RuntimeError):
    """Training produced a NaN or infinite loss (any task): a search records the trial as
    failed and goes on; a single run stops with this message."""
