"""Errors the CLIs report as one line on stderr with exit code 2 (user mistakes)."""

from __future__ import annotations


class SettingsError(ValueError):
    """A setting (flag, environment variable or ``.env`` entry) has a bad value.

    The message names the setting and what is wrong, on one line.
    """


class InvalidInputError(ValueError):
    """The graph's input is not a valid task/query (one-line message)."""
