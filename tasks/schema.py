"""The task schema: what a Mockingbird task is, validated at every boundary.

A task asks the model to *play a function* ``f(input) -> output`` (Mockingbird's "mock
function"): it gets the function's name, signature and docstring, a few training examples,
optional domain notes, and then test queries to answer.

Values are JSON-friendly so that tasks, answers and graph state round-trip through
checkpoints unchanged:

* ``grid``: a rectangular list of rows of integers 0-9 (ARC colours), e.g. ``[[0, 3, 3]]``.
* ``list``: a flat list of JSON scalars, e.g. ``[3, 1, 2]``.
* ``text``: a string.
* ``tabular``: input is a mapping of feature name to scalar; output is a scalar label.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TaskKind = Literal["grid", "list", "text", "tabular"]
TASK_KINDS: tuple[TaskKind, ...] = ("grid", "list", "text", "tabular")

Scalar = str | int | float | bool | None
Grid = list[list[int]]


def check_value(kind: TaskKind, value: Any, where: str) -> Any:
    """Validate one input or output value for a task kind.

    Args:
        kind: The task kind.
        value: The value to check.
        where: Where the value sits, for the error message (e.g. ``"train[2].output"``).

    Returns:
        The value, unchanged.

    Raises:
        ValueError: With a one-line message naming ``where`` and what is wrong.
    """
    if kind == "grid":
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: a grid must be a non-empty list of rows")
        width = None
        for r, row in enumerate(value):
            if not isinstance(row, list) or not row:
                raise ValueError(f"{where}: row {r} must be a non-empty list of integers 0-9")
            for c, cell in enumerate(row):
                if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell <= 9:
                    raise ValueError(f"{where}: cell [{r}][{c}] is {cell!r}, expected an integer 0-9")
            if width is None:
                width = len(row)
            elif len(row) != width:
                raise ValueError(
                    f"{where}: row {r} has {len(row)} cells, row 0 has {width} (not rectangular)"
                )
    elif kind == "list":
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            if isinstance(item, (list, dict)):
                raise ValueError(f"{where}: item {i} must be a scalar, got {type(item).__name__}")
    elif kind == "text":
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {type(value).__name__}")
    elif kind == "tabular":
        pass  # inputs and outputs differ in shape; Example/Query check them
    return value


class MockFunction(BaseModel):
    """The function the model role-plays (Mockingbird's mock function)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Python-style function name, e.g. 'transform'.")
    signature: str = Field(min_length=1, description="Signature, e.g. 'transform(grid: Grid) -> Grid'.")
    docstring: str = Field(default="", description="What the function does, as far as is known.")


class Example(BaseModel):
    """A solved example: ``function(input) == output``."""

    model_config = ConfigDict(extra="forbid")

    input: Any
    output: Any


class Query(BaseModel):
    """A test query; ``target`` is the expected output where known (for scoring)."""

    model_config = ConfigDict(extra="forbid")

    input: Any
    target: Any = None


class Task(BaseModel):
    """One task: a function to play, its demonstrations and the queries to answer."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Unique id, e.g. '1d_fill_3'.")
    kind: TaskKind = Field(description="Value kind: grid, list, text or tabular.")
    function: MockFunction = Field(description="The role-play description.")
    train: list[Example] = Field(default_factory=list, description="Training examples (demonstrations).")
    test: list[Query] = Field(default_factory=list, description="Test queries.")
    notes: list[str] = Field(default_factory=list, description="Domain notes shown to the model.")
    type: str | None = Field(default=None, description="Task type or family, for grouping in benchmarks.")
    source: str | None = Field(default=None, description="File the task was loaded from, if any.")
    key: str = Field(
        default="",
        description="Where long-term memory of the task is kept (notes, expert-labelled examples, "
        "router evidence). Empty: derived from the id and the task's content (kind, function, "
        "demonstrations), so two tasks that share an id (a/data.csv and b/data.csv) never share memory.",
    )

    @field_validator("id")
    @classmethod
    def _id_is_plain(cls, value: str) -> str:
        if any(ch in value for ch in "\n\r\t"):
            raise ValueError("must not contain newlines or tabs")
        return value

    @model_validator(mode="after")
    def _values_fit_kind(self) -> Task:
        for i, ex in enumerate(self.train):
            self._check_pair(ex.input, ex.output, f"train[{i}]")
        for i, q in enumerate(self.test):
            self._check_pair(q.input, q.target, f"test[{i}]", output_optional=True)
        return self

    @model_validator(mode="after")
    def _fill_key(self) -> Task:
        if not self.key:
            self.key = content_key(self)
        return self

    def _check_pair(self, inp: Any, out: Any, where: str, output_optional: bool = False) -> None:
        if self.kind == "tabular":
            if not isinstance(inp, dict) or not inp:
                raise ValueError(f"{where}.input: expected a non-empty mapping of feature to value")
            for key, val in inp.items():
                if isinstance(val, (list, dict)):
                    raise ValueError(f"{where}.input.{key}: feature values must be scalars")
            if out is not None and isinstance(out, (list, dict)):
                raise ValueError(f"{where}.output: a tabular label must be a scalar")
            return
        check_value(self.kind, inp, f"{where}.input")
        if out is None and output_optional:
            return
        check_value(self.kind, out, f"{where}.{'target' if output_optional else 'output'}")


def content_key(task: Task) -> str:
    """``<id slug>-<digest>``: the task's id made safe for store namespaces, and a digest of its
    id, kind, function and demonstrations (the memory key of a task that names none)."""
    payload = {
        "id": task.id,
        "kind": task.kind,
        "function": task.function.model_dump(mode="json"),
        "train": [e.model_dump(mode="json") for e in task.train],
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", task.id)[:60] or "task"
    return f"{slug}-{digest[:12]}"


def check_query(task: Task, value: Any, where: str = "query.input") -> Any:
    """Validate a query input for ``task`` (one-line ``ValueError`` naming ``where``)."""
    if task.kind == "tabular":
        if not isinstance(value, dict) or not value:
            raise ValueError(f"{where}: expected a non-empty mapping of feature to value")
        if any(isinstance(v, (list, dict)) for v in value.values()):
            raise ValueError(f"{where}: feature values must be scalars")
        return value
    return check_value(task.kind, value, where)


def task_json_schema() -> dict[str, Any]:
    """The JSON Schema of the project's own task format, for users writing task files."""
    schema = Task.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Mockingbird Graph task"
    return schema


def write_task_json_schema(path: Path) -> None:
    """Write :func:`task_json_schema` to ``path`` (pretty-printed)."""
    path.write_text(json.dumps(task_json_schema(), indent=2) + "\n", encoding="utf-8")
