"""Errors for malformed task files: one line naming the file, the field and what is wrong."""

from __future__ import annotations

from pathlib import Path


class TaskFileError(ValueError):
    """A task file is missing or malformed.

    ``str(err)`` is one line: ``"<file>: <field>: <what is wrong>"`` (the field when known).
    """

    def __init__(self, path: str | Path, field: str | None, reason: str) -> None:
        self.path = str(path)
        self.field = field
        self.reason = " ".join(reason.split())  # one line, whatever the cause said
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(where + self.reason)
