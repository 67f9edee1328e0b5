"""The task schema, its exported JSON Schema, and the bundled examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from graph.settings import EXAMPLES_DIR
from tasks.loaders import load_any
from tasks.schema import Task, check_query, check_value, task_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "tasks" / "task.schema.json"


def test_committed_json_schema_is_current():
    assert json.loads(SCHEMA_FILE.read_text()) == task_json_schema()


def test_kinds_are_checked():
    with pytest.raises(ValidationError, match="expected a string"):
        Task(
            id="t",
            kind="text",
            function={"name": "f", "signature": "f(x)"},
            train=[{"input": 1, "output": "a"}],
        )
    with pytest.raises(ValidationError, match="label must be a scalar"):
        Task(
            id="t",
            kind="tabular",
            function={"name": "f", "signature": "f(x)"},
            train=[{"input": {"a": 1}, "output": [1]}],
        )
    with pytest.raises(ValueError, match=r"[Ee]xtra"):
        Task.model_validate(
            {"id": "t", "kind": "grid", "function": {"name": "f", "signature": "s"}, "oops": 1}
        )


def test_check_value_and_query():
    assert check_value("grid", [[0, 9]], "x") == [[0, 9]]
    with pytest.raises(ValueError, match="x: row 1 has 1 cells"):
        check_value("grid", [[0, 9], [1]], "x")
    task = Task(id="t", kind="tabular", function={"name": "f", "signature": "f(x)"})
    with pytest.raises(ValueError, match="mapping"):
        check_query(task, [1])


def _rule(task_id: str):
    def fill(row):
        idx = [i for i, c in enumerate(row) if c]
        return [row[idx[0]] if idx[0] <= i <= idx[-1] else c for i, c in enumerate(row)]

    rules = {
        "shift_right": lambda g: [[0, *g[0][:-1]]],
        "recolor": lambda g: [[4 if c else 0 for c in g[0]]],
        "reverse": lambda g: [g[0][::-1]],
        "fill_gap": lambda g: [fill(g[0])],
        "sort_numbers": sorted,
    }
    return rules[task_id]


def test_bundled_examples_are_consistent_with_their_rules():
    tasks = load_any(EXAMPLES_DIR)
    assert len(tasks) == 5
    for task in tasks:
        rule = _rule(task.id)
        assert all(rule(e.input) == e.output for e in task.train), task.id
        assert all(rule(q.input) == q.target for q in task.test), task.id
        assert task.function.docstring


def test_grids_over_the_size_limits_are_refused():
    from tasks.schema import MAX_GRID_CELLS, MAX_GRID_SIDE

    assert check_value("grid", [[1] * 100] * 100, "g")  # 10,000 cells: the most allowed
    with pytest.raises(ValueError, match=f"g: {MAX_GRID_SIDE + 1} rows, more than the {MAX_GRID_SIDE}"):
        check_value("grid", [[1]] * (MAX_GRID_SIDE + 1), "g")
    with pytest.raises(ValueError, match=f"g: 1 x {MAX_GRID_SIDE + 1} cells, over the limit"):
        check_value("grid", [[1] * (MAX_GRID_SIDE + 1)], "g")
    with pytest.raises(ValueError, match=f"and {MAX_GRID_CELLS} in all"):
        check_value("grid", [[1] * 101] * 100, "g")
