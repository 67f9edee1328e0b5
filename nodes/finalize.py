"""``finalize``: score the answer against the target and record the outcome in long-term memory."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import State
from nodes.common import OUTCOMES_NS, cost_entry, query_key
from tasks.scoring import exact_match


def finalize(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Exact-match scoring (where a target exists) and an outcome record for the router."""
    started = time.perf_counter()
    task = state["task"]
    query = state["query"]
    target = query.get("target")
    correct = None if target is None else exact_match(task["kind"], state.get("answer"), target)
    store = runtime.store if runtime else None
    if store is not None:
        # Outcomes are the router's evidence in later queries of this task (one record per query).
        store.put(
            (*OUTCOMES_NS, task["id"]),
            query_key(query["input"]),
            {
                "strategy": state.get("strategy"),
                "correct": correct,
                "confidence": state.get("confidence"),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
    verdict = "no target" if correct is None else ("correct" if correct else "wrong")
    return {
        "correct": correct,
        "costs": [cost_entry("finalize", started)],
        "trace": [{"node": "finalize", "message": f"answer {verdict}"}],
    }
