"""The Mockingbird state machine.

``prepare -> route -> {icl | select | reflect | ttt} -> route -> ... -> finalize``: after every
strategy the graph returns to ``route``, which either escalates to another strategy or stops
(``finalize``); ``expert`` pauses the run for a person and then finalizes. The router
(``graph/router.py``) is the only place a strategy is chosen.

Exports ``builder`` and a checkpointer-free ``graph`` (for ``langgraph dev`` and for embedding
in a parent graph, which brings its own checkpointer); :func:`build_graph` compiles a graph
with a model bound and, optionally, a checkpointer and store (the CLI and tests attach those).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graph.context import Context
from graph.router import next_node
from graph.state import InputState, OutputState, State
from models.base import ModelBackend
from nodes.expert import make_expert_node
from nodes.finalize import finalize
from nodes.icl import make_icl_node
from nodes.prepare import prepare
from nodes.reflect import make_reflect_node
from nodes.route import make_route_node
from nodes.select import make_select_node
from nodes.ttt import make_ttt_node

GRAPH_NAME = "mockingbird"

#: Model strategies; each returns to ``route`` when done.
STRATEGY_NODES = ("icl", "select", "reflect", "ttt")


def make_builder(model: ModelBackend | None = None) -> StateGraph[State, Context, InputState, OutputState]:
    """A fresh, uncompiled graph; ``model`` binds a backend (else each run's context names one)."""
    b = StateGraph(State, context_schema=Context, input_schema=InputState, output_schema=OutputState)
    b.add_node("prepare", prepare)
    b.add_node("route", make_route_node(model))
    b.add_node("icl", make_icl_node(model))
    b.add_node("select", make_select_node(model))
    b.add_node("reflect", make_reflect_node(model))
    b.add_node("ttt", make_ttt_node(model))
    b.add_node("expert", make_expert_node(model))
    b.add_node("finalize", finalize)
    b.add_edge(START, "prepare")
    b.add_edge("prepare", "route")
    b.add_conditional_edges("route", next_node, [*STRATEGY_NODES, "expert", "finalize"])
    for name in STRATEGY_NODES:
        b.add_edge(name, "route")  # back to the router: escalate or stop
    b.add_edge("expert", "finalize")  # a person's answer ends the query
    b.add_edge("finalize", END)
    return b


def build_graph(
    *,
    model: ModelBackend | None = None,
    checkpointer: Any = None,
    store: Any = None,
    name: str = GRAPH_NAME,
    **compile_kwargs: Any,
) -> CompiledStateGraph[State, Context, InputState, OutputState]:
    """Compile the graph with explicit input/output schemas, ready to use or embed.

    Args:
        model: A backend to bind; when ``None`` the run's ``Context.model`` spec is loaded.
        checkpointer: A LangGraph checkpointer (e.g. from :func:`graph.storage.open_checkpointer`).
        store: A LangGraph store for long-term task memory.
        name: The compiled graph's name (shown when embedded as a sub-graph).
        **compile_kwargs: Passed to ``compile`` (e.g. ``interrupt_before`` in tests).
    """
    return make_builder(model).compile(checkpointer=checkpointer, store=store, name=name, **compile_kwargs)


builder = make_builder()
graph = builder.compile(name=GRAPH_NAME)
