"""One-line errors: malformed task files, and pydantic's validation errors for any input.

Every front door reports a user's mistake as one line naming the field and what is wrong;
:func:`error_line` (and :func:`first_error` where the parts are needed) turns a pydantic
:class:`~pydantic.ValidationError` into that line, the same way for task files, the state's task,
the tool's arguments, expert replies and the run's settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError


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


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a field path: ``("train", 0, "input")`` -> ``train[0].input``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


@dataclass(frozen=True)
class FieldError:
    """The first error of a :class:`~pydantic.ValidationError`, ready for one line."""

    loc: tuple[int | str, ...]
    """Where it is (pydantic's location; empty for an error of the whole value)."""
    message: str
    """What is wrong, on one line (pydantic's message without its ``Value error,`` prefix)."""
    type: str
    """Pydantic's error type (``missing``, ``literal_error``, ``extra_forbidden``, ...)."""
    input: Any = None
    """The offending value."""

    @property
    def field(self) -> str:
        """The location as a field path (``train[0].input``; empty for the whole value)."""
        return field_path(self.loc)

    def where(self, root: str = "") -> str:
        """The field's path under ``root`` (``task.train[0]``, ``tasks[3].kind``); ``root`` itself
        for an error of the whole value."""
        if not self.field or not root:
            return self.field or root
        return root + ("" if self.field.startswith("[") else ".") + self.field


def first_error(exc: ValidationError) -> FieldError:
    """The first error of ``exc`` (the one a one-line report names)."""
    err = exc.errors()[0]
    message = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
    return FieldError(loc=tuple(err["loc"]), message=message, type=err["type"], input=err.get("input"))


def error_line(
    exc: ValidationError, root: str = "", *, whole: str = "value", messages: Mapping[str, str] | None = None
) -> str:
    """``exc`` as one line, ``"<field>: <what is wrong>"``: ``"task.train[0].output: Field required"``.

    Args:
        exc: The validation error.
        root: The name of the validated value, put before the field (``task``); empty for none.
        whole: What to call the value when the error is about all of it and ``root`` is empty.
        messages: Replacement messages by pydantic error type (say what the allowed values are).
    """
    err = first_error(exc)
    return f"{err.where(root) or whole}: {(messages or {}).get(err.type, err.message)}"
