"""Helpers shared by nodes: the run's context, the model, cost and attempt entries."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import Attempt, Candidate, Cost
from models.base import Usage


def get_context(runtime: Runtime[Context] | None) -> Context:
    """The run's context; LangGraph passes ``None`` when the caller gave none, so build defaults."""
    ctx = runtime.context if runtime is not None else None
    return ctx if ctx is not None else Context()


def cost_entry(node: str, started: float, usage: Usage | None = None) -> Cost:
    """A cost record for ``node`` from its start time and model usage."""
    usage = usage or Usage()
    return Cost(
        node=node,
        seconds=round(time.perf_counter() - started, 4),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        requests=usage.requests,
    )


def measured_before(evidence: dict[str, Any], field: str, prefix: str, task_train: int, model: str) -> bool:
    """Whether ``evidence[field]`` was measured with this model and this many demonstrations
    (stored beside it as ``<prefix>_model`` and ``<prefix>_n``): reusable, not to measure again."""
    return (
        field in evidence
        and evidence.get(f"{prefix}_n") == task_train
        and evidence.get(f"{prefix}_model") == model
    )


def attempt_entry(
    strategy: str, candidates: list[Candidate], confidence: float, started: float, usage: Usage | None = None
) -> Attempt:
    """The record of one strategy's try at the query (the router reads these to escalate)."""
    usage = usage or Usage()
    return Attempt(
        strategy=strategy,
        answer=candidates[0]["answer"] if candidates else None,
        confidence=confidence,
        seconds=round(time.perf_counter() - started, 4),
        tokens=usage.prompt_tokens + usage.completion_tokens,
    )
