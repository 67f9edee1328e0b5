"""Durable runs: resume by thread id (SQLite and PostgreSQL), strict round-trips, finished threads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from graph.builder import build_graph
from graph.context import Context
from graph.runner import run_query
from graph.storage import open_checkpointer, open_store
from tests.graph.conftest import ScriptedBackend


def test_run_stopped_before_icl_resumes_in_a_new_graph(task, db):
    first = build_graph(
        model=ScriptedBackend(["9807\n"]),
        checkpointer=open_checkpointer(db),
        store=open_store(db),
        interrupt_before=["icl"],
    )
    partial = run_query(first, task, 0, context=Context(strategy="icl", samples=1), thread_id="t1")
    assert partial.answer is None  # stopped before the model ran

    # A new process would build a new graph on the same file: simulate it with new connections.
    model = ScriptedBackend(["9807\n"])
    second = build_graph(model=model, checkpointer=open_checkpointer(db), store=open_store(db))
    resumed = run_query(second, task, 0, context=Context(strategy="icl", samples=1), thread_id="t1")
    assert resumed.resumed == "resumed"
    assert resumed.correct is True
    assert len(model.calls) == 1
    nodes = [c["node"] for c in second.get_state({"configurable": {"thread_id": "t1"}}).values["costs"]]
    assert nodes == ["prepare", "route", "icl", "route", "finalize"]  # prepare/route not run again


def test_finished_thread_returns_its_result_without_calling_the_model(task, db):
    model = ScriptedBackend(["9807\n"])
    g = build_graph(model=model, checkpointer=open_checkpointer(db), store=open_store(db))
    first = run_query(g, task, 0, context=Context(strategy="icl", samples=2), thread_id="done")
    calls = len(model.calls)
    again = run_query(g, task, 0, context=Context(strategy="icl", samples=2), thread_id="done")
    assert again.resumed == "finished earlier"
    assert len(model.calls) == calls
    assert again.model_dump(exclude={"resumed"}) == first.model_dump(exclude={"resumed"})


def test_checkpointed_state_round_trips_exactly(task, db):
    g = build_graph(model=ScriptedBackend(["9807\n", "1111\n"]), checkpointer=open_checkpointer(db))
    run_query(g, task, 0, context=Context(strategy="icl", samples=2), thread_id="rt")
    cfg = {"configurable": {"thread_id": "rt"}}
    before = g.get_state(cfg).values
    reloaded = (
        build_graph(model=ScriptedBackend(["x"]), checkpointer=open_checkpointer(db)).get_state(cfg).values
    )
    assert reloaded == before
    assert reloaded["task"]["train"][0]["output"] == [[0, 2, 1, 0]]


def test_checkpoints_use_strict_serialization(db):
    saver = open_checkpointer(db)
    assert saver.serde.pickle_fallback is False  # type: ignore[attr-defined]
    assert {"checkpoints", "writes" if isinstance(db, Path) else "checkpoint_writes"} <= tables(db)


def tables(db: Path | str) -> set[str]:
    """The tables of a real database, read with its own driver (not through LangGraph)."""
    if isinstance(db, Path):
        return {
            r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")
        }
    import psycopg

    with psycopg.connect(db) as conn:
        rows = conn.execute("select tablename from pg_tables where schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_a_thread_answers_only_its_own_task_and_query(task, db):
    import pytest

    from graph.errors import InvalidInputError
    from tests.graph.conftest import reverse_task

    model = ScriptedBackend(["9807\n"])
    g = build_graph(model=model, checkpointer=open_checkpointer(db), store=open_store(db))
    ctx = Context(strategy="icl", samples=1)
    first = run_query(g, task, 0, context=ctx, thread_id="x")
    calls = len(model.calls)
    with pytest.raises(InvalidInputError, match="--thread x: belongs to task reverse and another query"):
        run_query(g, task, 1, context=ctx, thread_id="x")  # another query of the task
    with pytest.raises(InvalidInputError, match="another task"):
        run_query(g, reverse_task("other"), 0, context=ctx, thread_id="x")
    assert len(model.calls) == calls  # refused before anything ran
    again = run_query(g, task, 0, context=ctx, thread_id="x")  # its own query: the stored answer
    assert again.resumed == "finished earlier" and again.answer == first.answer


def test_a_finished_thread_whose_saved_state_is_damaged_is_one_line_not_a_traceback(task, db):
    import pytest

    from graph.errors import DamagedStateError

    g = build_graph(
        model=ScriptedBackend(["9807\n"]), checkpointer=open_checkpointer(db), store=open_store(db)
    )
    run_query(g, task, 0, context=Context(strategy="icl", samples=1), thread_id="bad")
    # what a flipped byte in a key did in the chaos suite: a cost entry without its token counts
    g.update_state({"configurable": {"thread_id": "bad"}}, {"costs": [{"node": "x", "seconds": 0.0}]})
    with pytest.raises(
        DamagedStateError, match=r"thread bad: its saved state cannot be read back \(KeyError"
    ):
        run_query(g, task, 0, context=Context(strategy="icl", samples=1), thread_id="bad")
