"""The compiled graph end to end on a scripted model: answers, confidence, costs, memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.store.memory import InMemoryStore

from graph.builder import build_graph, graph
from graph.context import Context
from graph.errors import InvalidInputError
from graph.memory import NOTES_NS
from graph.runner import run_query
from tests.graph.conftest import ScriptedBackend, reverse_task


def test_one_query_correct_with_full_agreement(task):
    model = ScriptedBackend(["9807\n"])
    g = build_graph(model=model)
    result = run_query(g, task, 0, context=Context(strategy="icl", samples=3, sample_views="off"))
    assert result.answer == [[9, 8, 0, 7]]
    assert result.correct is True
    assert result.confidence == pytest.approx(0.9048, abs=1e-4)  # the answer's probability, exp(-0.1)
    assert result.strategy == "icl"
    assert "3 demonstrations" in result.reason
    # one greedy call, then the two extra samples at the context's temperature
    assert model.calls == [(1, 0.0), (2, 0.7)]
    assert result.requests == 2 and result.completion_tokens == 15


def test_prompt_holds_demonstrations_and_query(task):
    model = ScriptedBackend(["9807\n"])
    run_query(build_graph(model=model), task, 0, context=Context(strategy="icl", samples=1, max_demos=2))
    text = model.prompts[0].text
    assert text == "I0120O0210\nI3004O4003\nI7089O"
    assert model.prompts[0].stop == ["\n"]


def test_agreement_is_the_confidence_and_parse_failures_never_win(task):
    # greedy says A; then B, A, garbage: A has 2 of 4 votes. A backend without log-probabilities
    # (a chat model not asked for them): agreement is the confidence.
    model = ScriptedBackend(["9807\n", "1111\n", "9807\n", "oops\n"], logprob=None)
    context = Context(strategy="icl", samples=4, sample_views="off")
    result = run_query(build_graph(model=model), task, 0, context=context)
    assert result.answer == [[9, 8, 0, 7]]
    assert result.confidence == 0.5
    votes = [(c["answer"], c["votes"]) for c in result.candidates]
    assert votes == [([[9, 8, 0, 7]], 2), ([[1, 1, 1, 1]], 1), (None, 1)]
    # With log-probabilities, the same votes pick the answer and its probability is the confidence.
    model = ScriptedBackend(["9807\n", "1111\n", "9807\n", "oops\n"], logprob=-0.2)
    result = run_query(build_graph(model=model), task, 0, context=context)
    assert result.answer == [[9, 8, 0, 7]] and result.confidence == pytest.approx(0.8187, abs=1e-4)


def test_wrong_answer_and_query_without_target(task):
    model = ScriptedBackend(["0000\n"])
    g = build_graph(model=model)
    wrong = run_query(g, task, 0, context=Context(strategy="icl", samples=1))
    assert wrong.correct is False
    untargeted = run_query(g, task, 1, context=Context(strategy="icl", samples=1))
    assert untargeted.correct is None and untargeted.target is None


def test_single_sample_confidence_comes_from_logprob(task):
    result = run_query(
        build_graph(model=ScriptedBackend(["9807\n"])), task, 0, context=Context(strategy="icl", samples=1)
    )
    assert result.confidence == pytest.approx(0.9048, abs=1e-4)  # exp(-0.1)


def test_costs_cover_every_node(task):
    g = build_graph(model=ScriptedBackend(["9807\n"]))
    out = g.invoke(
        {"task": task.model_dump(mode="json"), "query": {"input": task.test[0].input}},
        context=Context(strategy="icl", samples=1),
        version="v2",
    ).value
    assert [c["node"] for c in out["costs"]] == ["prepare", "route", "icl", "route", "finalize"]
    assert set(out) <= {
        "answer", "confidence", "correct", "strategy", "reason", "candidates", "costs",
        "attempts", "decisions", "expert",
    }  # fmt: skip


def test_store_notes_reach_the_state_and_outcomes_are_recorded(task):
    store = InMemoryStore()
    store.put(NOTES_NS, task.key, {"notes": ["Mirror around the centre."]})
    g = build_graph(model=ScriptedBackend(["9807\n"]), store=store)
    snapshots = list(
        g.stream(
            {
                "task": task.model_dump(mode="json"),
                "query": {"input": task.test[0].input, "target": task.test[0].target},
            },
            context=Context(strategy="icl", samples=1),
            stream_mode="values",
            version="v2",
        )
    )
    assert snapshots[-1]["data"]["notes"] == ["Colour 0 is background.", "Mirror around the centre."]
    records = store.search(("mockingbird", "outcomes", task.key))
    assert [r.value["correct"] for r in records] == [True]
    # the next query of the same task sees that outcome as evidence
    again = run_query(g, task, 0, context=Context(strategy="icl", samples=1))
    assert "ICL so far 1/1 on this task" in again.reason


def test_invalid_query_is_a_one_line_error(task):
    g = build_graph(model=ScriptedBackend(["9807\n"]))
    with pytest.raises(InvalidInputError, match=r"query.input: cell \[0\]\[1\] is 12"):
        run_query(g, task, 0, context=Context(strategy="icl", samples=1), query_input=[[1, 12]])


def test_module_graph_has_no_checkpointer_and_explicit_schemas():
    assert graph.checkpointer is None
    assert graph.name == "mockingbird"
    assert set(graph.get_input_jsonschema()["properties"]) == {"task", "query"}
    assert "answer" in graph.get_output_jsonschema()["properties"]


def test_graph_resolves_model_from_context_when_none_is_bound(tiny_checkpoint: Path, task):
    from models.factory import clear_model_cache

    clear_model_cache()
    result = run_query(
        graph, task, 0, context=Context(model=f"hf:{tiny_checkpoint}", strategy="icl", samples=2)
    )
    assert result.strategy == "icl" and result.requests >= 1
    assert result.correct is (result.answer == task.test[0].target)


def test_two_tasks_keep_separate_memory():
    store = InMemoryStore()
    g = build_graph(model=ScriptedBackend(["9807\n"]), store=store)
    a, b = reverse_task("a"), reverse_task("b")
    run_query(g, a, 0, context=Context(strategy="icl", samples=1))
    result_b = run_query(g, b, 0, context=Context(strategy="icl", samples=1))
    assert "so far" not in result_b.reason


def test_ttt_strategy_through_the_graph_on_a_local_model(tiny_checkpoint: Path, task):
    from models.factory import clear_model_cache, load_model

    clear_model_cache()
    model = load_model(f"hf:{tiny_checkpoint}")
    events: list[dict] = []
    result = run_query(
        build_graph(model=model),
        task,
        0,
        context=Context(strategy="ttt", ttt_steps=6, ttt_views=2),
        on_event=events.append,
    )
    assert result.strategy == "ttt"
    steps = [e["step"] for e in events if e.get("node") == "ttt" and "step" in e]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert any("views voted" in e.get("message", "") for e in events)
    # the reported confidence is the vote's top share, as the node measured it
    assert any(f"top share {result.confidence:.2f}" in e.get("message", "") for e in events)
    assert (result.answer is None) == (result.confidence == 0.0)
