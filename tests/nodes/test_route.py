"""The route node: the evidence it gathers for the router, and when it reads it again."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore

from graph.context import Context
from graph.memory import update_evidence
from graph.state import State
from nodes.route import make_route_node
from tests.graph.conftest import ScriptedBackend


def _attempt(strategy: str, confidence: float) -> dict:
    return {"strategy": strategy, "answer": [[0]], "confidence": confidence, "seconds": 0.1, "tokens": 10}


def test_a_gain_measured_during_the_query_is_read_by_the_next_decision(task):
    # ICL's samples agreed on an answer, but ICL fails half its demonstrations: the router went to
    # reflection, which measured its held-out gain on the demonstrations (+0.00) and stored it.
    # The evidence of the route node's first visit still held reflection's prior (+0.05) for the
    # answer in hand; read again, the measured +0.00 leaves room for TTT (prior +0.0625 for an
    # agreed answer), which is tried.
    store = InMemoryStore()
    update_evidence(store, task.key, reflect_gain=0.0, reflect_n=3)
    first_visit = {"demos": 3, "samples": 4, "model": "scripted", "can_adapt": True, "can_score": False,
                   "loo_icl": 0.5, "loo_n": 4, "icl_call_s": 0.02, "gains": {}, "gain_n": {}}  # fmt: skip
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("route", make_route_node(ScriptedBackend([])))
    builder.add_edge(START, "route")
    builder.add_edge("route", END)
    state = {
        "task": task.model_dump(mode="json"),
        "query": {"input": task.test[0].input},
        "attempts": [_attempt("icl", 0.75), _attempt("reflect", 0.75)],
        "evidence": first_visit,
        "strategy": "reflect",
    }
    out = builder.compile(store=store).invoke(state, context=Context(), version="v2").value
    assert out["evidence"]["gains"] == {"reflect": 0.0}
    assert out["decision"]["strategy"] == "ttt", out["decision"]["reason"]
