"""``route``: gather evidence and let the router decide the strategy for this query."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.router import decide
from graph.state import State
from nodes.common import cost_entry, get_context, task_outcomes


def route(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Record the router's decision and the numbers behind it."""
    started = time.perf_counter()
    ctx = get_context(runtime)
    task = state["task"]
    evidence = {
        "demos": len(task.get("train", [])),
        "samples": ctx.samples,
        "outcomes": task_outcomes(runtime.store if runtime else None, task["id"]),
    }
    decision = decide(requested=ctx.strategy, evidence=evidence)
    return {
        "decision": decision,
        "strategy": decision["strategy"],
        "reason": decision["reason"],
        "costs": [cost_entry("route", started)],
        "trace": [{"node": "route", "message": f"chose {decision['strategy']}: {decision['reason']}"}],
    }
