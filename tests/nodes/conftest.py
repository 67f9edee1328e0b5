"""Fixtures for node tests: the graph tests' scripted backend, its chat and scoring variants, and
a one-node graph runner with a real store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from graph.context import Context
from graph.state import State
from models.base import Capabilities, RenderedPrompt
from prompts.chat import ChatRenderer
from tasks.schema import Example, MockFunction, Query, Task
from tests.graph.conftest import ScriptedBackend, reverse_task


class ScriptedChat(ScriptedBackend):
    """The scripted backend rendering the role-play chat prompt (a chat model that cannot score)."""

    def __init__(self, script: list[str], name: str = "scripted-chat") -> None:
        super().__init__(script, name)
        self.renderer = ChatRenderer()  # type: ignore[assignment]


class ScriptedScorer(ScriptedBackend):
    """The scripted backend that can also score: a candidate's log-likelihood comes from a table."""

    capabilities = Capabilities(score=True)

    def __init__(self, script: list[str], scores: dict[str, float], default: float = -10.0) -> None:
        super().__init__(script, "scripted-scorer")
        self.scores = scores
        self.default = default
        self.scored: list[list[str]] = []

    def score(self, prompt: RenderedPrompt, candidates: list[str]) -> list[float]:
        self.scored.append(list(candidates))
        return [self.scores.get(c, self.default) for c in candidates]


def run_node(
    node: Callable[..., dict[str, Any]],
    task: Task,
    *,
    store: BaseStore | None = None,
    context: Context | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``node`` alone in a compiled graph (real LangGraph runtime, store attached)."""
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    graph = builder.compile(store=store)
    state = {
        "task": task.model_dump(mode="json"),
        "query": {"input": task.test[0].input},
        "notes": notes or [],
    }
    return dict(graph.invoke(state, context=context or Context(samples=1), version="v2").value)


@pytest.fixture
def task() -> Task:
    return reverse_task()


@pytest.fixture
def upper_task() -> Task:
    """A text task (upper-casing) for the real tiny model, which gets it all wrong."""
    return Task(
        id="upper",
        kind="text",
        function=MockFunction(name="upper", signature="upper(s) -> str"),
        train=[Example(input=a, output=a.upper()) for a in ("ab", "cd", "ef")],
        test=[Query(input="gh", target="GH")],
    )
