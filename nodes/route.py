"""``route``: gather evidence and let the router decide the strategy for this query."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.router import decide
from graph.state import State
from models.base import ModelBackend
from nodes.common import cost_entry, get_context, resolve_model, task_outcomes


def make_route_node(
    bound: ModelBackend | None = None,
) -> Any:  # a LangGraph node (its overloads reject a Callable type)
    """Build the ``route`` node; ``bound`` is the graph's model (else the context's)."""

    def route(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        """Record the router's decision and the numbers behind it."""
        return _route(state, runtime, bound)

    return route


def _route(state: State, runtime: Runtime[Context], bound: ModelBackend | None) -> dict[str, Any]:
    started = time.perf_counter()
    ctx = get_context(runtime)
    model = resolve_model(ctx, bound)
    task = state["task"]
    evidence = {
        "demos": len(task.get("train", [])),
        "samples": ctx.samples,
        "outcomes": task_outcomes(runtime.store if runtime else None, task["id"]),
        "model": model.name,
        "can_adapt": model.capabilities.adapt,
        "can_score": model.capabilities.score,
    }
    decision = decide(requested=ctx.strategy, evidence=evidence)
    return {
        "decision": decision,
        "strategy": decision["strategy"],
        "reason": decision["reason"],
        "costs": [cost_entry("route", started)],
        "trace": [{"node": "route", "message": f"chose {decision['strategy']}: {decision['reason']}"}],
    }
