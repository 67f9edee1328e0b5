"""Strict checkpoint storage: forged and corrupt checkpoints are refused in one line."""

from __future__ import annotations

import sqlite3

import ormsgpack
import pytest

from graph.builder import build_graph
from graph.context import Context
from graph.errors import InvalidInputError
from graph.runner import run_query
from graph.storage import CheckpointReadError, open_checkpointer, strict_serializer
from tests.graph.conftest import ScriptedBackend


def test_a_type_outside_the_allow_list_is_refused_not_decoded_to_its_arguments(tmp_path):
    canary = tmp_path / "canary"
    forged = ormsgpack.packb({"task": ormsgpack.Ext(0, ormsgpack.packb(("os", "system", f"touch {canary}")))})
    serde = strict_serializer()
    with pytest.raises(CheckpointReadError, match=r"names the type os\.system, which is not allowed"):
        serde.loads_typed(("msgpack", forged))
    assert not canary.exists()
    broken = [(("pickle", b"x"), "Unknown serialization type"), (("msgpack", b"\xc1"), "ValueError")]
    for data, what in broken:
        with pytest.raises(CheckpointReadError, match=what):
            serde.loads_typed(data)
    state = {"task": {"id": "t", "train": [[0, 1]]}, "confidence": 0.5, "answer": None}
    assert serde.loads_typed(serde.dumps_typed(state)) == state  # plain state round-trips


def test_a_corrupt_checkpoint_in_the_database_is_one_line_naming_it(task, tmp_path):
    db = tmp_path / "mb.sqlite"  # the bytes are corrupted with sqlite3 directly: a SQLite file
    g = build_graph(model=ScriptedBackend(["9807\n"]), checkpointer=open_checkpointer(db))
    run_query(g, task, 0, context=Context(strategy="icl", samples=1), thread_id="t")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE checkpoints SET checkpoint = substr(checkpoint, 1, 20)")
    conn.close()
    reopened = build_graph(model=ScriptedBackend(["x"]), checkpointer=open_checkpointer(db))
    with pytest.raises(CheckpointReadError) as err:
        reopened.get_state({"configurable": {"thread_id": "t"}})
    message = str(err.value)
    assert message.startswith(f"{db}: a checkpoint cannot be read (corrupt or tampered with), refused")
    assert "\n" not in message


def test_a_misspelt_durability_is_refused(task, db):
    g = build_graph(model=ScriptedBackend(["9807\n"]), checkpointer=open_checkpointer(db))
    ctx = Context(strategy="icl", samples=1)
    with pytest.raises(InvalidInputError, match="durability: expected one of sync, async, exit, got 'some"):
        run_query(g, task, 0, context=ctx, thread_id="t", durability="sometimes")
    done = run_query(g, task, 0, context=ctx, thread_id="t", durability="sync")
    assert done.correct is True
