"""The compiled graph as a node of a parent graph."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graph.builder import build_graph
from graph.context import Context
from tests.graph.conftest import ScriptedBackend


class ParentState(TypedDict, total=False):
    task: dict[str, Any]
    query: dict[str, Any]
    answer: Any
    confidence: float
    strategy: str
    log: list[str]


def test_compiled_graph_added_directly_as_a_node(task):
    child = build_graph(model=ScriptedBackend(["9807\n"]))
    parent = StateGraph(ParentState, context_schema=Context)
    parent.add_node("mockingbird", child)
    parent.add_node("report", lambda s: {"log": [f"{s['strategy']} answered {s['answer']}"]})
    parent.add_edge(START, "mockingbird")
    parent.add_edge("mockingbird", "report")
    parent.add_edge("report", END)
    app = parent.compile(checkpointer=InMemorySaver())
    out = app.invoke(
        {"task": task.model_dump(mode="json"), "query": {"input": task.test[0].input}},
        {"configurable": {"thread_id": "p1"}},
        context=Context(strategy="icl", samples=1),
        version="v2",
    ).value
    assert out["answer"] == [[9, 8, 0, 7]]
    assert out["log"] == ["icl answered [[9, 8, 0, 7]]"]


class OtherState(TypedDict, total=False):
    problem: dict[str, Any]
    x: Any
    solution: Any


def test_parent_with_its_own_keys_maps_them_explicitly(task):
    child = build_graph(model=ScriptedBackend(["9807\n"]))

    def ask(state: OtherState) -> dict[str, Any]:
        out = child.invoke(
            {"task": state["problem"], "query": {"input": state["x"]}},
            context=Context(strategy="icl", samples=1),
            version="v2",
        ).value
        return {"solution": out["answer"]}

    parent = StateGraph(OtherState)
    parent.add_node("ask", ask)
    parent.add_edge(START, "ask")
    parent.add_edge("ask", END)
    out = (
        parent.compile()
        .invoke({"problem": task.model_dump(mode="json"), "x": [[1, 0, 0, 2]]}, version="v2")
        .value
    )
    assert out["solution"] == [[9, 8, 0, 7]]  # the scripted model's answer, mapped to the parent's key
