"""Errors the CLIs report as one line on stderr: user mistakes (exit 2), damaged saved state (exit 1)."""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting (flag, environment variable or ``.env`` entry) has a bad value.

    The message names the setting and what is wrong, on one line.
    """


class InvalidInputError(ValueError):
    """The graph's input is not a valid task/query (one-line message)."""


class DamagedStateError(RuntimeError):
    """A thread's saved state cannot be read back (damaged bytes, or an incompatible writer).

    Not the user's mistake (exit 1), but nothing to show a traceback for: the message names the
    thread and what could not be read, on one line.
    """
