"""The ``reflect`` node: held-out mistakes become notes, kept only when they do not hurt, and stored."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore

from graph.context import Context
from graph.memory import NOTES_NS, task_evidence, task_notes, update_evidence
from graph.state import State
from graph.storage import open_store
from models.hf_backend import HFBackend
from nodes.icl import make_icl_node
from nodes.loo import held_out_notes
from nodes.prepare import prepare
from nodes.reflect import Reflector, make_reflect_node
from prompts.compact import correction_note, parse_correction
from tasks.schema import Task
from tests.nodes.conftest import ScriptedBackend, ScriptedChat, run_node

# The reverse task's demonstrations, as the compact model writes their outputs.
RIGHT = ["0210\n", "4003\n", "6055\n"]
CORRECTION = correction_note([[3, 0, 0, 4]], [[4, 0, 0, 3]], [[0, 0, 0, 0]])


def test_correction_notes_round_trip_and_other_notes_are_not_corrections():
    note = correction_note([[3, 0]], [[0, 3]], "oops, not a grid")
    assert note == 'Correction: input [[3,0]] gives [[0,3]], not "oops, not a grid"'
    assert parse_correction(note) == ([[3, 0]], [[0, 3]])
    assert parse_correction(correction_note("a, gives b", "c")) == ("a, gives b", "c")
    assert parse_correction("Colour 0 is background.") is None
    assert parse_correction("Correction: input [[1]] gives") is None
    assert held_out_notes([note, "x"], [[3, 0]]) == ["x"]


def test_mistakes_become_corrections_shown_nearest_the_query(task):
    # round 0 (held-out 0, 1, 2): demo 1 wrong; round 1 with its correction: all right; then the query
    model = ScriptedBackend([RIGHT[0], "0000\n", RIGHT[2], *RIGHT, "9807\n"])
    store = InMemoryStore()
    out = run_node(make_reflect_node(model), task, store=store, context=Context(samples=1, reflect_rounds=2))

    assert out["notes"] == [CORRECTION]
    assert task_notes(store, task.key) == [CORRECTION]
    evidence = task_evidence(store, task.key)
    assert evidence["reflect_acc_before"] == 0.6667 and evidence["reflect_acc_after"] == 1.0
    assert evidence["reflect_gain"] == 0.3333 and evidence["reflect_n"] == 3
    # held out 0: the other demonstrations, then the correction, nearest the held-out input
    assert model.prompts[3].text == "I3004O4003\nI5506O6055\nI3004O4003\nI0120O"
    # held out 1: its own correction is left out (else the accuracy would be copying)
    assert model.prompts[4].text == "I0120O0210\nI5506O6055\nI3004O"
    assert model.prompts[-1].text.endswith("I5506O6055\nI3004O4003\nI7089O")
    assert out["answer"] == [[9, 8, 0, 7]]
    messages = [t["message"] for t in out["trace"]]
    assert any("round 1: 1 notes, held-out accuracy 1.00 (kept)" in m for m in messages)
    assert any("no mistakes left" in m for m in messages)
    assert [a["strategy"] for a in out["attempts"]] == ["reflect"]
    assert out["costs"][0]["node"] == "reflect" and out["costs"][0]["requests"] == 7


def test_a_round_that_lowers_accuracy_is_discarded(task):
    # round 0: 2/3; round 1 with the correction: 1/3 -> discarded, and a deterministic model stops
    model = ScriptedBackend([RIGHT[0], "0000\n", RIGHT[2], "0000\n", "0000\n", RIGHT[2], "9807\n"])
    store = InMemoryStore()
    out = run_node(
        make_reflect_node(model),
        task,
        store=store,
        context=Context(samples=1, reflect_rounds=3),
        notes=["Colour 0 is background."],
    )
    assert out["notes"] == ["Colour 0 is background."]
    assert task_notes(store, task.key) == []
    assert task_evidence(store, task.key)["reflect_gain"] == 0.0
    assert model.prompts[-1].text == "I0120O0210\nI3004O4003\nI5506O6055\nI7089O"  # no correction
    messages = " | ".join(t["message"] for t in out["trace"])
    assert "held-out accuracy 0.33 (discarded: accuracy dropped)" in messages
    assert "round 1 lowered held-out accuracy" in messages
    assert len(model.calls) == 7  # no second round


def test_equal_accuracy_keeps_the_round(task):
    # the correction fixes demo 1 but breaks demo 0: 2/3 both times, so it is kept
    model = ScriptedBackend([RIGHT[0], "0000\n", RIGHT[2], "0000\n", RIGHT[1], RIGHT[2]])
    result = Reflector(model).forward(task, [], rounds=1)
    assert result.acc_before == result.acc_after == 2 / 3
    assert result.new_notes == [CORRECTION] and result.rounds[0].kept
    assert result.stopped == "1 rounds done"


def test_notes_survive_a_restart_and_reach_the_next_prompt(task, tmp_path: Path):
    db = tmp_path / "memory.sqlite"
    store = open_store(db)
    model = ScriptedBackend([RIGHT[0], "0000\n", RIGHT[2], *RIGHT, "9807\n"])
    run_node(make_reflect_node(model), task, store=store, context=Context(samples=1, reflect_rounds=1))
    store.conn.close()

    reopened = open_store(db)
    assert task_notes(reopened, task.key) == [CORRECTION]
    assert task_evidence(reopened, task.key)["reflect_gain"] == 0.3333
    # a later query of the task, answered by plain ICL: prepare reads the notes into the prompt
    later = ScriptedBackend(["9807\n"])
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("prepare", prepare)
    builder.add_node("icl", make_icl_node(later))
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "icl")
    builder.add_edge("icl", END)
    state = {"task": task.model_dump(mode="json"), "query": {"input": task.test[0].input}}
    out = builder.compile(store=reopened).invoke(state, context=Context(samples=1), version="v2").value
    assert CORRECTION in out["notes"]
    assert later.prompts[0].text == "I0120O0210\nI3004O4003\nI5506O6055\nI3004O4003\nI7089O"
    # reflecting again on this task reuses the stored result: only the query is sampled
    again = ScriptedBackend(["9807\n"])
    out = run_node(make_reflect_node(again), task, store=reopened, context=Context(samples=1))
    assert len(again.calls) == 1 and out["notes"] == [CORRECTION]
    assert "reusing" in out["trace"][0]["message"]
    reopened.conn.close()


def test_chat_model_writes_a_rule_note_from_its_mistakes(task):
    rule = "Reverse the order of all cells, background included."
    model = ScriptedChat(
        [
            "[[0,2,1,0]]",
            "[[0,0,0,0]]",
            "[[6,0,5,5]]",
            f"Note: {rule}\n",
            "[[0,2,1,0]]",
            "[[4,0,0,3]]",
            "[[6,0,5,5]]",
            "[[9,8,0,7]]",
        ]
    )
    store = InMemoryStore()
    out = run_node(make_reflect_node(model), task, store=store, context=Context(samples=1, reflect_rounds=1))
    reflection = model.prompts[3].messages[-1].content
    assert "Your prediction: [[0,0,0,0]]" in reflection and "Correct output: [[4,0,0,3]]" in reflection
    assert model.calls[3] == (1, 0.0)
    assert task_notes(store, task.key) == [rule]
    assert f"- {rule}" in model.prompts[-1].messages[-1].content
    assert out["answer"] == [[9, 8, 0, 7]] and rule in out["notes"]


def test_other_model_or_demonstrations_measure_again(task):
    store = InMemoryStore()
    update_evidence(
        store,
        task.key,
        reflect_acc_before=0.0,
        reflect_acc_after=1.0,
        reflect_n=3,
        reflect_model="another",
        reflect_gain=1.0,
    )
    model = ScriptedBackend([*RIGHT, "9807\n"])
    out = run_node(make_reflect_node(model), task, store=store, context=Context(samples=1))
    assert len(model.calls) == 4  # measured again: 3 held-out predictions + the query
    assert task_evidence(store, task.key)["reflect_model"] == "scripted"
    assert store.get(NOTES_NS, task.key).value == {"notes": []}
    assert "no mistakes left" in out["trace"][-2]["message"]


def test_reflect_on_a_real_tiny_model(tiny_checkpoint, upper_task: Task, tmp_path: Path):
    """A random tiny model gets everything wrong: its corrections are stored and prompted."""
    model, task = HFBackend(tiny_checkpoint), upper_task
    store = open_store(tmp_path / "m.sqlite")
    out = run_node(make_reflect_node(model), task, store=store, context=Context(samples=2, reflect_rounds=1))
    evidence = task_evidence(store, task.key)
    assert evidence["reflect_acc_before"] == 0.0 and evidence["reflect_n"] == 3  # it gets all wrong
    stored = task_notes(store, task.key)
    assert stored == [n for n in out["notes"] if parse_correction(n)]
    assert all(parse_correction(n)[1] == parse_correction(n)[0].upper() for n in stored)
    top = out["candidates"][0] if out["candidates"] else None
    # the answer's sequence probability (the real model gives log-probabilities), not a vote share
    expected = math.exp(top["logprob"]) if top and top["answer"] is not None else 0.0
    assert out["confidence"] == pytest.approx(expected, abs=1e-4)
    assert out["costs"][0]["prompt_tokens"] > 0
    assert any("held-out accuracy" in t["message"] for t in out["trace"])
    store.conn.close()


def test_a_demonstration_is_corrected_once(task):
    # round 1 fixes nothing and demo 1 is wrong again, differently: no second correction -> stop
    model = ScriptedBackend([RIGHT[0], "0000\n", RIGHT[2], RIGHT[0], "1111\n", RIGHT[2]])
    result = Reflector(model).forward(task, [], rounds=3)
    assert result.new_notes == [CORRECTION] and len(result.rounds) == 1
    assert result.stopped == "nothing new to note" and len(model.calls) == 6


def test_a_reflection_that_keeps_no_note_is_marked_a_repeat_of_icl(task):
    # the round lowers held-out accuracy and is discarded: the answer comes from ICL's own prompt
    model = ScriptedBackend([RIGHT[0], "0000\n", RIGHT[2], "0000\n", "0000\n", RIGHT[2], "9807\n"])
    out = run_node(make_reflect_node(model), task, store=InMemoryStore(), context=Context(samples=1))
    assert out["attempts"][0]["repeat_of"] == "icl"
    # a kept note changes the prompt: an answer of its own
    kept = ScriptedBackend([RIGHT[0], "0000\n", RIGHT[2], *RIGHT, "9807\n"])
    out = run_node(make_reflect_node(kept), task, store=InMemoryStore(), context=Context(samples=1))
    assert "repeat_of" not in out["attempts"][0]
