"""Helpers shared by nodes: the run's context, the model, cost and attempt entries."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from graph.context import Context, resolve_model
from graph.memory import task_notes
from graph.state import Attempt, Candidate, Cost, State
from models.base import ModelBackend, Usage
from tasks.schema import Task


def get_context(runtime: Runtime[Context] | None) -> Context:
    """The run's context; LangGraph passes ``None`` when the caller gave none, so build defaults."""
    ctx = runtime.context if runtime is not None else None
    return ctx if ctx is not None else Context()


class NodeInputs(NamedTuple):
    """What a strategy node starts from: the run's context, the task, its model and the store."""

    ctx: Context
    task: Task
    model: ModelBackend
    store: BaseStore | None


def node_inputs(state: State, runtime: Runtime[Context] | None, bound: ModelBackend | None) -> NodeInputs:
    """The context, the state's task, the model that answers it (``bound``, else the context's) and
    the long-term store (``None`` without one)."""
    ctx = get_context(runtime)
    task = Task.model_validate(state["task"])
    store = runtime.store if runtime is not None else None
    return NodeInputs(ctx, task, resolve_model(ctx, bound, task.kind), store)


def known_notes(state: State, store: BaseStore | None, task: Task) -> list[str]:
    """The query's notes, then the ones stored with the task, each once."""
    return list(dict.fromkeys([*state.get("notes", []), *task_notes(store, task.key)]))


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


def trace_event(node: str, message: str, tokens: int = 0) -> dict[str, Any]:
    """One trace line of ``node``, with the model tokens spent on what it reports."""
    return {"node": node, "message": message, "tokens": tokens}


def strategy_update(
    strategy: str,
    candidates: list[Candidate],
    confidence: float,
    started: float,
    usage: Usage | None,
    trace: list[dict[str, Any]],
) -> dict[str, Any]:
    """A strategy node's state update: the candidates (best first), the top one's answer, the
    confidence, the attempt for the router, the cost and the trace."""
    return {
        "candidates": candidates,
        "answer": candidates[0]["answer"] if candidates else None,
        "confidence": confidence,
        "attempts": [attempt_entry(strategy, candidates, confidence, started, usage)],
        "costs": [cost_entry(strategy, started, usage)],
        "trace": trace,
    }
