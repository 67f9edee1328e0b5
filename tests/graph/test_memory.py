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


def test_evidence_notes_and_examples_are_checked_before_they_are_stored() -> None:
    from graph.memory import (
        EVIDENCE_NS,
        add_observed_gains,
        add_task_example,
        add_task_notes,
        task_evidence,
        task_examples,
        task_notes,
        update_evidence,
    )

    store, key = InMemoryStore(), _task().key
    update_evidence(store, key, dg_diff=-0.25, dg_n=4, dg_model="m")
    add_observed_gains(store, key, {"ttt": 1.0})
    add_observed_gains(store, key, {"ttt": 0.0})
    assert task_evidence(store, key) == {
        "dg_diff": -0.25,
        "dg_n": 4,
        "dg_model": "m",
        "observed": {"ttt": [2, 1.0, 1.0]},  # queries, summed gain, summed squared gain
    }
    with pytest.raises(ValidationError):
        update_evidence(store, key, reflect_gain=3.0)  # a gain in accuracy lies in [-1, 1]
    with pytest.raises(ValidationError):
        update_evidence(store, key, loo={"acc": 0.5})  # what it was measured with is missing
    assert task_evidence(store, key)["dg_diff"] == -0.25  # nothing written by the refused updates
    store.put(EVIDENCE_NS, key, task_evidence(store, key) | {"legacy_field": 1})
    update_evidence(store, key, reflect_gain=0.5)  # older fields survive an update
    assert task_evidence(store, key)["legacy_field"] == 1
    assert add_task_notes(store, key, ["a", "a", "b"]) == ["a", "b"] == task_notes(store, key)
    add_task_example(store, key, [1], [2], expert="ada")
    assert task_examples(store, key) == [{"input": [1], "output": [2]}]


def test_model_and_type_evidence_are_typed_running_sums() -> None:
    from graph.memory import (
        MODEL_EVIDENCE_NS,
        TYPE_EVIDENCE_NS,
        model_evidence,
        model_evidence_sums,
        record_model_evidence,
        type_evidence_sums,
    )

    store = InMemoryStore()
    record_model_evidence(store, "m", gains={"ttt": 1.0}, costs={"icl": (0.5, 10)}, task_type="toy")
    record_model_evidence(
        store, "m", gains={"ttt": 0.0}, costs={"icl": (1.5, 20), "ttt": (3.0, 0)}, task_type="toy"
    )
    # stored as plain JSON lists, as before the records were typed
    assert store.get(MODEL_EVIDENCE_NS, "m").value == {
        "gains": {"ttt": [2, 1.0, 1.0]},  # queries, summed gain, summed squared gain
        "costs": {"icl": [2, 2.0, 30], "ttt": [1, 3.0, 0]},
    }
    assert store.get(TYPE_EVIDENCE_NS, "m|toy").value == {"gains": {"ttt": [2, 1.0, 1.0]}}
    assert model_evidence_sums(store, "m").costs["icl"] == (2, 2.0, 30)
    assert type_evidence_sums(store, "m", "other").gains == {}
    assert model_evidence(store, "m", "toy") == {
        "gains": {"ttt": 0.5},
        "gain_n": {"ttt": 2},
        "gain_sq": {"ttt": 0.5},
        "costs": {"icl": [1.0, 15.0], "ttt": [3.0, 0.0]},
        "type_gains": {"ttt": 0.5},
        "type_gain_n": {"ttt": 2},
        "type_gain_sq": {"ttt": 0.5},
        # one type: its mean 0.5 is the centre; its sampling variance (0.5 / 2) is all the spread
        "type_spread": {"ttt": {"between": -0.25, "types": 1}},
    }
    assert model_evidence(None, "m")["gains"] == {}
    # a cost that cannot be one is refused, and nothing of it is written
    with pytest.raises(ValidationError):
        record_model_evidence(store, "m", gains={}, costs={"icl": (-5.0, 5)})  # summed seconds < 0
    assert store.get(MODEL_EVIDENCE_NS, "m").value["costs"]["icl"] == [2, 2.0, 30]
    # fields written by an older version survive an update
    store.put(MODEL_EVIDENCE_NS, "m", store.get(MODEL_EVIDENCE_NS, "m").value | {"legacy": "x"})
    store.put(TYPE_EVIDENCE_NS, "m|toy", {"gains": {"ttt": [2, 1.0]}, "legacy": 1})
    record_model_evidence(store, "m", gains={"ttt": 1.0}, costs={}, task_type="toy")
    assert store.get(MODEL_EVIDENCE_NS, "m").value["legacy"] == "x"
    # (the old record's squares read as 2, its gains as +-1)
    assert store.get(TYPE_EVIDENCE_NS, "m|toy").value == {"gains": {"ttt": [3, 2.0, 3.0]}, "legacy": 1}


def test_gain_records_written_before_squares_were_kept_read_as_the_noisiest():
    from langgraph.store.memory import InMemoryStore

    from graph.memory import TYPE_EVIDENCE_NS, model_evidence, record_model_evidence

    store = InMemoryStore()
    store.put(TYPE_EVIDENCE_NS, "m|old", {"gains": {"ttt": [4, 2.0]}})  # an older store's record
    assert model_evidence(store, "m", "old")["type_gain_sq"] == {"ttt": 1.0}  # as if every gain were +-1
    record_model_evidence(store, "m", gains={"ttt": 0.0}, costs={}, task_type="old")
    assert store.get(TYPE_EVIDENCE_NS, "m|old").value == {"gains": {"ttt": [5, 2.0, 4.0]}}


def test_the_spread_between_types_separates_types_that_differ_from_noise():
    from langgraph.store.memory import InMemoryStore

    from graph.memory import record_model_evidence, type_spread

    def spread(per_type: dict[str, list[float]]) -> float:
        store = InMemoryStore()
        for task_type, gains in per_type.items():
            for g in gains:
                record_model_evidence(store, "m", gains={"ttt": g}, costs={}, task_type=task_type)
        record_model_evidence(store, "other", gains={"ttt": 1.0}, costs={}, task_type="a")  # not m's
        record_model_evidence(store, "m", gains={"ttt": 1.0}, costs={}, task_type="single")  # n < 2
        measured = type_spread(store, "m")["ttt"]
        assert measured["types"] == len(per_type)
        return measured["between"]

    # grids: one type always solved by an adapter, another never: all of the spread is real
    assert spread({"solved": [1.0] * 4, "never": [0.0] * 4}) == pytest.approx(0.25)
    # tables: the same +-1 noise in every type, no real difference: the spread is noise (<= 0)
    noisy = [1.0, -1.0, 0.0, 0.0, 1.0, 0.0]
    assert spread({"a": noisy, "b": noisy[::-1], "c": noisy[1:] + noisy[:1]}) <= 0.0
    assert type_spread(None, "m") == {}
