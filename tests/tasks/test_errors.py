"""One line for a pydantic validation error: the field's path, then what is wrong."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from tasks.errors import error_line, field_path, first_error
from tasks.schema import Task


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["a", "b"]
    cells: list[int] = []

    @model_validator(mode="after")
    def _check(self) -> _Row:
        if len(self.cells) > 2:
            raise ValueError("at most 2 cells,\n  got more")
        return self


def _error(value: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Row.model_validate(value)
    return info.value


def test_the_first_error_names_the_field_by_its_path() -> None:
    assert field_path(("train", 0, "input")) == "train[0].input" and field_path(()) == ""
    err = first_error(_error({"action": "a", "cells": [1, "x"]}))
    assert (err.loc, err.field, err.type, err.input) == (("cells", 1), "cells[1]", "int_parsing", "x")
    assert err.where("row") == "row.cells[1]" and err.where() == "cells[1]"
    assert error_line(_error({"action": "a", "cells": [1, "x"]}), "rows[3]").startswith(
        "rows[3].cells[1]: Input should be a valid integer"
    )


def test_an_error_of_the_whole_value_is_one_line_without_pydantics_prefix() -> None:
    exc = _error({"action": "a", "cells": [1, 2, 3]})
    assert error_line(exc) == "value: at most 2 cells, got more"
    assert error_line(exc, "row") == "row: at most 2 cells, got more"
    assert error_line(exc, whole="reply") == "reply: at most 2 cells, got more"


def test_messages_by_error_type_replace_pydantics() -> None:
    messages = {"literal_error": "must be a or b", "extra_forbidden": "unknown field"}
    assert error_line(_error({"action": "c"}), messages=messages) == "action: must be a or b"
    extra = _error({"action": "a", "tip": 1})
    assert error_line(extra, "reply", messages=messages) == "reply.tip: unknown field"
    assert error_line(_error({"action": "c"})) == "action: Input should be 'a' or 'b'"


def test_a_task_error_names_the_nested_field() -> None:
    task = {
        "id": "t",
        "kind": "list",
        "function": {"name": "f", "signature": "f(x: list[int]) -> list[int]"},
        "train": [{"input": [1]}],
        "test": [{"input": [2]}],
    }
    with pytest.raises(ValidationError) as info:
        Task.model_validate(task)
    assert error_line(info.value, "task") == "task.train[0].output: Field required"
