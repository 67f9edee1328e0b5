"""Task identity: tasks that share a file stem never share memory; old stores are migrated."""

from __future__ import annotations

from pathlib import Path

from graph.builder import build_graph
from graph.context import Context
from graph.memory import (
    EVIDENCE_NS,
    EXAMPLES_NS,
    MIGRATED_NS,
    NOTES_NS,
    OUTCOMES_NS,
    add_task_example,
    add_task_notes,
    task_evidence,
    task_examples,
    task_notes,
)
from graph.runner import run_query
from graph.storage import open_checkpointer, open_store
from tasks.loaders import load_tasks
from tasks.tabular import TaskSplit
from tests.graph.conftest import ScriptedBackend


def two_data_csvs(tmp_path: Path) -> tuple:
    """``a/data.csv`` and ``b/data.csv``: the same stem, different tasks."""
    tasks = []
    for folder, rule in (("a", lambda x: x * 2), ("b", lambda x: x + 100)):
        (tmp_path / folder).mkdir()
        rows = "\n".join(f"{x},{rule(x)}" for x in range(1, 7))
        (tmp_path / folder / "data.csv").write_text(f"x,label\n{rows}\n")
        tasks += load_tasks(tmp_path / folder / "data.csv", TaskSplit(k_shot=3))
    return tuple(tasks)


def test_same_stem_different_tasks_have_different_memory_keys(tmp_path):
    a, b = two_data_csvs(tmp_path)
    assert a.id == b.id == "data"
    assert a.key != b.key and a.key.startswith("data-") and b.key.startswith("data-")
    assert load_tasks(tmp_path / "a" / "data.csv", TaskSplit(k_shot=3))[0].key == a.key  # stable across loads
    # the key survives the state's round trip and expert-labelled examples joining the demonstrations
    grown = type(a).model_validate(
        a.model_dump() | {"train": [*a.model_dump()["train"], {"input": {"x": 9}, "output": 18}]}
    )
    assert grown.key == a.key  # fmt: skip


def test_one_tasks_expert_answers_are_not_the_others_demonstrations(tmp_path):
    a, b = two_data_csvs(tmp_path)
    db = tmp_path / "mb.sqlite"
    model = ScriptedBackend(["0\n"])
    g = build_graph(model=model, checkpointer=open_checkpointer(db), store=open_store(db))
    store = open_store(db)
    add_task_example(store, a.key, {"x": 50}, 100, expert="ada")
    add_task_notes(store, a.key, ["double it"])
    run_query(g, b, 0, context=Context(strategy="icl", samples=1), thread_id="b")
    # the compact table codec writes one line per demonstration (values as bins, not as text)
    assert (model.prompts[-1].text or "").count("\n") == 3  # b's three demonstrations only
    assert task_notes(store, b.key) == [] and task_examples(store, b.key) == []
    run_query(g, a, 0, context=Context(strategy="icl", samples=1), thread_id="a")
    assert (model.prompts[-1].text or "").count("\n") == 4  # a's own expert example joined its demos


def test_memory_under_an_old_stem_id_moves_to_the_first_task_that_claims_it(tmp_path):
    a, b = two_data_csvs(tmp_path)
    db = tmp_path / "mb.sqlite"
    old = open_store(db)  # a store written before tasks had memory keys: everything under "data"
    old.put(NOTES_NS, "data", {"notes": ["old note"]})
    old.put(EVIDENCE_NS, "data", {"dg_diff": 0.25})
    old.put((*EXAMPLES_NS, "data"), "k1", {"input": {"x": 40}, "output": 80})
    old.put((*OUTCOMES_NS, "data"), "q1", {"strategy": "icl", "correct": True, "attempts": {"icl": True}})
    g = build_graph(model=ScriptedBackend(["0\n"]), checkpointer=open_checkpointer(db), store=open_store(db))
    first = run_query(g, a, 0, context=Context(strategy="icl", samples=1), thread_id="a")
    assert first.status == "done"
    store = open_store(db)
    assert task_notes(store, a.key) == ["old note"]
    assert task_evidence(store, a.key)["dg_diff"] == 0.25
    assert task_examples(store, a.key) == [{"input": {"x": 40}, "output": 80}]
    assert store.get((*OUTCOMES_NS, a.key), "q1") is not None
    assert store.get(NOTES_NS, "data") is None and store.search((*EXAMPLES_NS, "data")) == []
    assert store.get(MIGRATED_NS, "data").value["to"] == a.key
    # the other task with the same stem does not inherit them
    run_query(g, b, 0, context=Context(strategy="icl", samples=1), thread_id="b")
    assert task_notes(store, b.key) == [] and task_examples(store, b.key) == []
