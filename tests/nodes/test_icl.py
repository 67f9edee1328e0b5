"""The ``icl`` node: samples at the temperature, or greedy answers under invertible views."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from graph.context import Context, sample_views_for
from models.base import RenderedPrompt
from nodes.icl import make_icl_node
from tasks.schema import Task
from tests.nodes.conftest import ScriptedBackend, run_node


class CopyBackend(ScriptedBackend):
    """Answers every prompt with its own query (the compact ``I<query>O``): right on an identity
    task under any view, so the views agree only if each answer is mapped back by its inverse."""

    def answer(self, prompt: RenderedPrompt, n: int) -> list[str]:
        return [(prompt.text or "").rsplit("I", 1)[1].removesuffix("O") + "\n"] * n


def identity_task(task: Task) -> Task:
    """``task`` with every output equal to its input (the copy backend's rule)."""
    train = [e.model_copy(update={"output": e.input}) for e in task.train]
    test = [q.model_copy(update={"target": q.input}) for q in task.test]
    return task.model_copy(update={"id": "copy", "train": train, "test": test})


def test_views_map_each_answer_back_and_vote(task):
    copy = identity_task(task)
    model = CopyBackend(["unused"])
    out = run_node(make_icl_node(model), copy, context=Context(samples=4, sample_views="on"))
    # Four greedy calls, each on a different prompt (the identity's first), all mapped back to
    # the same answer: 4 votes of 4; the confidence is that answer's probability (exp(-0.1)).
    assert model.calls == [(1, 0.0)] * 4
    assert len({p.text for p in model.prompts}) == 4
    assert model.prompts[0].text.endswith("I" + "".join(map(str, copy.test[0].input[0])) + "O")
    assert out["answer"] == copy.test[0].input and out["confidence"] == pytest.approx(0.9048, abs=1e-4)
    assert out["candidates"][0]["votes"] == 4
    assert out["attempts"][0]["tokens"] == sum(len(p.text or "") for p in model.prompts) + 4 * 5


def test_a_constant_answer_disagrees_with_itself_under_views(task):
    # The same text under a mirror or a colour permutation means a different grid once mapped
    # back: a model that ignores the query cannot look sure.
    model = ScriptedBackend(["1234\n"])
    out = run_node(make_icl_node(model), task, context=Context(samples=4, sample_views="on"))
    assert out["answer"] == [[1, 2, 3, 4]]  # the identity's answer wins the tie
    assert out["confidence"] < 1.0 and len(out["candidates"]) > 1


def test_temperature_samples_without_views(task):
    model = ScriptedBackend(["1234\n"])
    out = run_node(make_icl_node(model), task, context=Context(samples=4, sample_views="off"))
    assert model.calls == [(1, 0.0), (3, 0.7)]  # the greedy sample, then three at the temperature
    assert out["confidence"] == pytest.approx(0.9048, abs=1e-4) and out["candidates"][0]["votes"] == 4


def test_the_kinds_defaults_and_a_bad_setting():
    assert sample_views_for("by-kind", "grid") and sample_views_for("by-kind", "tabular")
    # A table's views average label probabilities: a backend that cannot score draws the greedy label.
    assert not sample_views_for("by-kind", "tabular", can_average=False)
    assert sample_views_for("by-kind", "grid", can_average=False) and sample_views_for(
        "on", "tabular", can_average=False
    )
    assert not sample_views_for("by-kind", "list") and sample_views_for("on", "tabular")
    assert not sample_views_for("off", "grid")
    with pytest.raises(ValueError, match="sample_views: got 'maybe'"):
        Context(sample_views="maybe")


def test_on_a_table_the_greedy_label_alone_is_drawn_and_its_probability_is_the_confidence():
    from nodes.icl import ICLPredictor
    from tasks.tabular import TaskSplit, load_table_task

    fruit = Path(__file__).resolve().parents[1] / "data" / "tables" / "fruit.csv"
    table = Task.model_validate(load_table_task(fruit, TaskSplit(k_shot=8, seed=0, queries=1)))
    labels = sorted({str(e.output) for e in table.train})
    # Asked for 4 samples, the table gets its greedy label only: samples at the temperature could
    # outvote it (4 samples' majority cost 5 points on held-out tables) and add no evidence.
    model = ScriptedBackend(["A\n", "B\n", "B\n", "B\n"])
    candidates, gen = ICLPredictor(model).forward(table, table.test[0].input, notes=[], samples=4)
    assert model.calls == [(1, 0.0)] and len(gen.samples) == 1
    assert len(candidates) == 1 and str(candidates[0]["answer"]) in labels
    # Through the node, the confidence is then the greedy answer's probability, not a vote share.
    # (Four identical samples would have said 1.0; the scripted greedy sample's log-probability is -0.1.)
    out = run_node(make_icl_node(ScriptedBackend(["A\n"])), table, context=Context(samples=4))
    assert out["confidence"] == pytest.approx(0.9048, abs=1e-4)
    # Elsewhere (a grid without views) the majority of the samples stays the answer.
    grid = ScriptedBackend(["1234\n", "5678\n", "5678\n", "5678\n"])
    task = Task.model_validate(
        {
            "id": "g",
            "kind": "grid",
            "function": {"name": "f", "signature": "f(g)", "docstring": "d"},
            "train": [{"input": [[1, 2]], "output": [[2, 1]]}],
            "test": [{"input": [[3, 4]]}],
        }
    )
    candidates, _ = ICLPredictor(grid).forward(task, task.test[0].input, notes=[], samples=4)
    assert candidates[0]["answer"] == [[5, 6, 7, 8]] and candidates[0]["votes"] == 3


def _fruit(k_shot: int = 8) -> Task:
    from tasks.tabular import TaskSplit, load_table_task

    fruit = Path(__file__).resolve().parents[1] / "data" / "tables" / "fruit.csv"
    return Task.model_validate(load_table_task(fruit, TaskSplit(k_shot=k_shot, seed=0, queries=2)))


def test_views_on_a_table_average_each_class_probability_back_to_its_own_label():
    from nodes.icl import ICLPredictor
    from tests.nodes.conftest import ScriptedScorer

    table = _fruit()
    classes = sorted({str(e.output) for e in table.train})
    # A model that always prefers the first symbol, whatever the rows say: under views that
    # permute the labels, "A" names a different fruit each time, so once each probability goes
    # back to its own class the average is spread, and the model cannot look as sure as one view.
    model = ScriptedScorer([], {"A": 0.0}, default=-3.0)
    one = 1 / (1 + (len(classes) - 1) * math.exp(-3.0))  # one view's probability of its "A"
    # (Seed 1's views: two of the three after the identity permute the labels.)
    candidates, gen = ICLPredictor(model).forward(
        table, table.test[0].input, notes=[], samples=4, views=True, seed=1
    )
    assert model.calls == [] and len(model.scored) == 4  # scored, never generated
    assert all(sorted(s) == list("ABCDEFGH"[: len(classes)]) for s in model.scored)
    probs = [math.exp(c["logprob"] or -99) for c in candidates]
    assert sorted(str(c["answer"]) for c in candidates) == classes and sum(probs) == pytest.approx(1.0)
    assert probs == sorted(probs, reverse=True) and probs[0] < one
    assert sum(c["votes"] for c in candidates) == 4 and len(gen.samples) == 4
    # The identity view's "A" is the first class in sorted order: it got its vote.
    assert any(str(c["answer"]) == classes[0] and c["votes"] >= 1 for c in candidates)


def test_views_on_a_table_with_the_embedded_model():
    from models.factory import load_model
    from nodes.icl import ICLPredictor

    model = load_model("embedded").for_kind("tabular")
    table = _fruit()
    query = table.test[0]
    candidates, gen = ICLPredictor(model).forward(table, query.input, notes=[], samples=4, views=True)
    probs = [math.exp(c["logprob"] or -99) for c in candidates]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4) and probs == sorted(probs, reverse=True)
    assert {str(c["answer"]) for c in candidates} == {str(e.output) for e in table.train}
    assert gen.usage.requests == 4 and gen.usage.prompt_tokens > 4 * 8 * 5  # four prompts of 8 rows
    # One view (the identity) is the scored distribution of the plain prompt: its top class is the
    # greedy label, a little surer than the greedy sample, whose probability also counts every
    # symbol that is not a class.
    greedy, _ = ICLPredictor(model).forward(table, query.input, notes=[], samples=1)
    alone, _ = ICLPredictor(model)._averaged_views(table, query.input, notes=[], n=1, seed=0)
    assert alone[0]["answer"] == greedy[0]["answer"]
    assert 1.0 >= math.exp(alone[0]["logprob"] or -99) >= math.exp(greedy[0]["logprob"] or -99) - 1e-6
    out = run_node(make_icl_node(model), table, context=Context(samples=4, sample_views="on"))
    assert out["confidence"] == pytest.approx(probs[0], abs=1e-4) and out["answer"] == candidates[0]["answer"]


def test_every_node_that_answers_in_context_uses_the_same_views():
    from nodes.icl import uses_views
    from tests.nodes.conftest import ScriptedScorer

    table, scorer, plain = _fruit(), ScriptedScorer([], {}), ScriptedBackend(["A\n"])
    assert uses_views(Context(samples=4), table, scorer) and not uses_views(Context(samples=4), table, plain)
    assert not uses_views(Context(samples=1), table, scorer)
    assert not uses_views(Context(samples=4, sample_views="off"), table, scorer)
    # A regression table keeps its greedy digit by default (its views were never measured).
    from tasks.tabular import TaskSplit, load_table_task

    rent = Path(__file__).resolve().parents[1] / "data" / "tables" / "rent.csv"
    prices = Task.model_validate(load_table_task(rent, TaskSplit(k_shot=8, seed=0, queries=1)))
    assert not uses_views(Context(samples=4), prices, scorer)
    assert uses_views(Context(samples=4, sample_views="on"), prices, scorer)
    # Reflection's answer on a table is the views' averaged distribution too: four scored views.
    from nodes.reflect import make_reflect_node

    model = ScriptedScorer(["A\n"], {"A": 0.0}, default=-3.0)
    out = run_node(make_reflect_node(model), table, context=Context(samples=4, reflect_rounds=1))
    assert len(model.scored) == 4 and out["answer"] in {e.output for e in table.train}
