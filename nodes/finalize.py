"""``finalize``: score the answer against the target and record the outcome in long-term memory."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import State
from nodes.common import (
    OUTCOMES_NS,
    add_observed_gains,
    cost_entry,
    memory_key,
    query_key,
    record_model_evidence,
)
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
            (*OUTCOMES_NS, memory_key(task)),
            query_key(query["input"]),
            {
                "strategy": state.get("strategy"),
                "correct": correct,
                # each strategy tried, scored on its own, so ICL's record is not hidden by escalation
                "attempts": {
                    a["strategy"]: None if target is None else exact_match(task["kind"], a["answer"], target)
                    for a in state.get("attempts", [])
                },
                "confidence": state.get("confidence"),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        _learn(store, state, target)
    verdict = "no target" if correct is None else ("correct" if correct else "wrong")
    return {
        "correct": correct,
        "costs": [cost_entry("finalize", started)],
        "trace": [{"node": "finalize", "message": f"answer {verdict}"}],
    }


def _learn(store: Any, state: State, target: Any) -> None:
    """Update the router's evidence from this query: each strategy's gain over ICL and its cost.

    A strategy's observed gain is its exact match minus ICL's on the same query (ICL's
    leave-one-out accuracy when ICL did not run), so TTT chosen directly still teaches the router.
    """
    task, evidence = state["task"], state.get("evidence") or {}
    attempts = [a for a in state.get("attempts", []) if a["strategy"] != "expert"]
    model = evidence.get("model")
    if not attempts or not model:
        return
    costs = {a["strategy"]: (a["seconds"], a["tokens"]) for a in attempts}
    gains: dict[str, float] = {}
    if target is not None:
        hit = {a["strategy"]: float(exact_match(task["kind"], a["answer"], target)) for a in attempts}
        baseline = hit.get("icl", evidence.get("loo_icl"))
        if baseline is not None:
            gains = {s: h - float(baseline) for s, h in hit.items() if s != "icl"}
    add_observed_gains(store, memory_key(task), gains)
    record_model_evidence(store, model, gains=gains, costs=costs, task_type=task.get("type"))
