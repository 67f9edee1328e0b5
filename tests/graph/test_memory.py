"""Long-term memory's typed records: what is written is what a reader gets back, and a record of the
wrong shape is refused before it reaches the store."""

from __future__ import annotations

import pytest
from langgraph.store.memory import InMemoryStore
from pydantic import ValidationError

from graph.memory import (
    OUTCOMES_NS,
    finished_run,
    query_key,
    record_finished,
    record_outcome,
    record_run,
    run_of,
    task_outcomes,
)
from tasks.schema import Task


def _task() -> Task:
    return Task.model_validate(
        {
            "id": "rev",
            "kind": "list",
            "function": {"name": "f", "signature": "f(x: list[int]) -> list[int]"},
            "train": [{"input": [1, 2], "output": [2, 1]}],
            "test": [{"input": [3, 4], "target": [4, 3]}],
        }
    )


def test_run_records_round_trip() -> None:
    store, task = InMemoryStore(), _task()
    assert run_of(store, "t1") is None and run_of(None, "t1") is None
    record_run(store, "t1", task, 0, {"model": "embedded"})
    record = run_of(store, "t1")
    assert record is not None and record["task_id"] == "rev" and record["task_key"] == task.key
    assert record["query_index"] == 0 and record["context"] == {"model": "embedded"} and record["started"]
    assert finished_run(store, "t1") is None
    record_finished(store, "t1", {"answer": [4, 3], "correct": True})
    assert finished_run(store, "t1") == {"answer": [4, 3], "correct": True}


def test_outcomes_are_typed_and_read_back_by_the_router() -> None:
    store, task = InMemoryStore(), _task()
    record_outcome(
        store,
        task.key,
        [3, 4],
        strategy="ttt",
        correct=True,
        attempts={"icl": False, "ttt": True},
        confidence=0.8,
    )
    item = store.get((*OUTCOMES_NS, task.key), query_key([3, 4]))
    assert item is not None and item.value["attempts"] == {"icl": False, "ttt": True}
    assert task_outcomes(store, task.key, "icl") == {"n": 1, "correct": 0}
    assert task_outcomes(store, task.key, "ttt") == task_outcomes(store, task.key) == {"n": 1, "correct": 1}
    with pytest.raises(ValidationError):
        record_outcome(store, task.key, [5], strategy="icl", correct="yes", attempts={}, confidence=None)  # type: ignore[arg-type]
