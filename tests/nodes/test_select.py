"""The ``select`` node: sample, let the model pick (log-likelihood or multiple choice), DG-DIFF."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from langgraph.store.memory import InMemoryStore

from graph.context import Context
from graph.memory import task_evidence, update_evidence
from graph.storage import open_store
from models.base import PromptParts
from models.hf_backend import HFBackend
from nodes.select import Sampling, Selector, make_select_node, measure_dg_diff, softmax_share
from prompts.chat import parse_choice
from tasks.schema import Task
from tests.nodes.conftest import ScriptedBackend, ScriptedChat, ScriptedScorer, run_node

# Per held-out demonstration of the reverse task: the greedy sample, then one sample at temperature.
#   demo 0 (-> 0210): greedy right; "1111" scores lower         -> generation ok, selection ok
#   demo 1 (-> 4003): greedy wrong; the right one scores higher -> generation wrong, selection ok
#   demo 2 (-> 6055): both samples agree and are right          -> both ok
DG_SCRIPT = ["0210\n", "1111\n", "0000\n", "4003\n", "6055\n", "6055\n"]
DG_SCORES = {"0210\n": -1.0, "1111\n": -5.0, "4003\n": -0.5, "0000\n": -3.0}


def test_dg_diff_is_exact_on_a_hand_made_case(task):
    model = ScriptedScorer(DG_SCRIPT, DG_SCORES)
    dg = measure_dg_diff(model, task, sampling=Sampling(n=2))
    assert (dg.gen_acc, dg.select_acc, dg.n) == (pytest.approx(2 / 3), 1.0, 3)
    assert dg.dg_diff == pytest.approx(1 / 3)
    # demo 2 had one distinct answer: nothing to score
    assert model.scored == [["0210\n", "1111\n"], ["0000\n", "4003\n"]]
    # each demonstration was held out of its own prompt
    assert model.prompts[2].text == "I0120O0210\nI5506O6055\nI3004O"


def test_node_stores_dg_diff_once_and_answers_by_score(task):
    store = InMemoryStore()
    model = ScriptedScorer([*DG_SCRIPT, "1111\n", "9807\n"], DG_SCORES | {"9807\n": -0.2})
    out = run_node(make_select_node(model), task, store=store, context=Context(samples=2))
    ev = task_evidence(store, task.key)
    assert (ev["dg_diff"], ev["select_acc"], ev["gen_acc"], ev["dg_n"]) == (0.3333, 1.0, 0.6667, 3)
    assert out["answer"] == [[9, 8, 0, 7]]
    assert out["confidence"] == round(softmax_share([-5.0, -0.2], 1), 4)
    assert [c["answer"] for c in out["candidates"]] == [[[9, 8, 0, 7]], [[1, 1, 1, 1]]]
    assert out["attempts"][0]["strategy"] == "select" and out["costs"][0]["node"] == "select"
    assert "DG-DIFF +0.33 on 3 held-out demonstrations" in out["trace"][0]["message"]
    # a second query of the task reuses the stored DG-DIFF: only the query's two samples
    again = ScriptedScorer(["9807\n", "1111\n"], DG_SCORES | {"9807\n": -0.2})
    out = run_node(make_select_node(again), task, store=store, context=Context(samples=1))
    assert again.calls == [(1, 0.0), (1, 0.7)]  # samples=1 still draws two: selection needs a choice
    assert "measured earlier" in out["trace"][0]["message"]


def test_selection_by_log_likelihood_picks_the_highest_scoring_candidate(task):
    # the majority (1111, two votes) scores lower than the minority 9807
    model = ScriptedScorer(["1111\n", "9807\n", "1111\n", "2222\n"], {"9807\n": -0.2, "1111\n": -2.0})
    result = Selector(model).forward(task, task.test[0].input, notes=[], sampling=Sampling(n=4))
    assert result.method == "score" and result.answer == [[9, 8, 0, 7]]
    assert result.scores == [-2.0, -0.2, -10.0]  # in vote order: 1111, 9807, 2222
    expected = math.exp(-0.2) / (math.exp(-0.2) + math.exp(-2.0) + math.exp(-10.0))
    assert result.confidence == pytest.approx(expected, abs=1e-4)
    assert [c["answer"][0][0] for c in result.candidates] == [9, 1, 2]
    assert result.greedy == [[1, 1, 1, 1]]


def test_unparseable_samples_are_never_selected(task):
    model = ScriptedScorer(["oops\n", "9807\n"], {"oops\n": 0.0, "9807\n": -9.0})
    result = Selector(model).forward(task, task.test[0].input, notes=[], sampling=Sampling(n=2))
    assert result.method == "single" and result.answer == [[9, 8, 0, 7]] and result.confidence == 0.5
    assert model.scored == []
    none = Selector(ScriptedScorer(["oops\n"], {})).forward(
        task, task.test[0].input, notes=[], sampling=Sampling(n=2)
    )
    assert none.method == "none" and none.answer is None and none.confidence == 0.0


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("(B)", 1),
        ("B", 1),
        (" c. ", None),  # a lower-case letter is a word, not an option
        ("The answer is C.", 2),
        ("Answer: (A)", 0),
        ("B) [[9,8,0,7]]", 1),
        ("[[9,8,0,7]]", 1),  # a value instead of a letter: the option with that value
        ("Output: [[1,1,1,1]]", 0),
        ("(A) or (B)", None),
        ("I am not sure", None),
        ("", None),
        ("(D)", None),  # no such option
    ],
)
def test_multiple_choice_reply_parses_into_an_option(reply, expected):
    options = [[[1, 1, 1, 1]], [[9, 8, 0, 7]], [[2, 2, 2, 2]]]
    assert parse_choice(reply, options, "grid") == expected


def test_chat_model_selects_by_multiple_choice(task):
    model = ScriptedChat(["[[9,8,0,7]]", "[[1,1,1,1]]", "[[1,1,1,1]]", "Answer: (B)"])
    result = Selector(model).forward(task, task.test[0].input, notes=["Mirror it."], sampling=Sampling(n=3))
    prompt = model.prompts[-1].messages[-1].content
    assert "(A) [[1,1,1,1]]\n(B) [[9,8,0,7]]" in prompt and "- Mirror it." in prompt
    assert "Input: [[7,0,8,9]]" in prompt
    assert result.method == "choice" and result.answer == [[9, 8, 0, 7]]
    assert result.confidence == pytest.approx(1 / 3, abs=1e-4)


def test_unparseable_choice_falls_back_to_the_vote(task):
    model = ScriptedChat(["[[9,8,0,7]]", "[[1,1,1,1]]", "[[1,1,1,1]]", "hmm, both look fine"])
    result = Selector(model).forward(task, task.test[0].input, notes=[], sampling=Sampling(n=3))
    assert result.method == "vote" and result.answer == [[1, 1, 1, 1]]
    assert result.confidence == pytest.approx(2 / 3, abs=1e-4)
    assert "unparseable choice 'hmm, both look fine'" in result.message


def test_a_backend_that_neither_scores_nor_reads_prose_votes(task):
    store = InMemoryStore()
    update_evidence(store, task.key, dg_diff=0.0, select_acc=0.0, gen_acc=0.0, dg_n=3, dg_model="scripted")
    model = ScriptedBackend(["1111\n", "9807\n", "1111\n"])
    out = run_node(make_select_node(model), task, store=store, context=Context(samples=3))
    assert out["answer"] == [[1, 1, 1, 1]] and out["confidence"] == pytest.approx(2 / 3, abs=1e-4)
    assert "can neither score nor read prose" in out["trace"][-1]["message"]


def test_select_on_a_real_tiny_model(tiny_checkpoint, upper_task: Task, tmp_path: Path):
    """A random tiny model writes arbitrary text; selection must pick its most likely candidate."""
    model, task = HFBackend(tiny_checkpoint), upper_task
    store = open_store(tmp_path / "m.sqlite")
    out = run_node(make_select_node(model), task, store=store, context=Context(samples=3, temperature=1.5))
    ev = task_evidence(store, task.key)
    assert ev["dg_n"] == 3 and ev["dg_diff"] == pytest.approx(ev["select_acc"] - ev["gen_acc"], abs=1e-3)
    assert f"confidence {out['confidence']:.2f}" in out["trace"][-1]["message"]
    assert (out["answer"] is None) == (out["confidence"] == 0.0) and out["costs"][0]["prompt_tokens"] > 0
    store.conn.close()
    # the selection itself, checked against the model's own scores
    result = Selector(model).forward(task, "gh", notes=[], sampling=Sampling(n=4, temperature=1.5, seed=1))
    options = [c for c in result.candidates if c["answer"] is not None]
    assert len(options) > 1  # seeded: four distinct random strings
    assert result.method == "score" and result.chosen == result.candidates[0]
    prompt = model.renderer.render(
        PromptParts(kind="text", function=task.function, demos=task.train, query="gh")
    )
    direct = model.score(prompt, [model.renderer.format_value(c["answer"], "text") for c in options])
    assert direct.index(max(direct)) == 0  # the chosen candidate, listed first, is the most likely
