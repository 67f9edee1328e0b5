"""Helpers shared by nodes: the run's context, the model, long-term memory and cost entries."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from graph.context import Context
from graph.state import Attempt, Candidate, Cost
from models.base import ModelBackend, Usage
from models.factory import load_model

#: Namespaces of the long-term store (one per kind of task memory).
NOTES_NS = ("mockingbird", "notes")
OUTCOMES_NS = ("mockingbird", "outcomes")
EVIDENCE_NS = ("mockingbird", "evidence")
EXAMPLES_NS = ("mockingbird", "examples")
MODEL_EVIDENCE_NS = ("mockingbird", "model_evidence")


def get_context(runtime: Runtime[Context] | None) -> Context:
    """The run's context; LangGraph passes ``None`` when the caller gave none, so build defaults."""
    ctx = runtime.context if runtime is not None else None
    return ctx if ctx is not None else Context()


def resolve_model(ctx: Context, bound: ModelBackend | None) -> ModelBackend:
    """The model for this run: bound to the graph (``build_graph(model=...)``) or from the context.

    Local models are cached by the factory, so resolving per node is cheap.
    """
    if bound is not None:
        return bound
    return load_model(
        ctx.model,
        openai_base_url=ctx.openai_base_url or None,
        timeout_s=ctx.timeout_s,
        max_attempts=ctx.max_attempts,
    )


def query_key(value: Any) -> str:
    """A stable key for a query input (store keys must be strings)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def task_notes(store: BaseStore | None, task_id: str) -> list[str]:
    """Notes kept for a task in the long-term store (empty without a store)."""
    if store is None:
        return []
    item = store.get(NOTES_NS, task_id)
    return list(item.value.get("notes", [])) if item else []


def task_outcomes(store: BaseStore | None, task_id: str, strategy: str | None = None) -> dict[str, int]:
    """How earlier queries of a task went: ``{"n": ..., "correct": ...}`` over scored queries.

    With ``strategy``, how that strategy's own attempts went (also when the router escalated past
    it); without, how the final answers went.
    """
    if store is None:
        return {"n": 0, "correct": 0}
    items = store.search((*OUTCOMES_NS, task_id), limit=1000)
    if strategy is None:
        marks = [i.value.get("correct") for i in items]
    else:
        marks = [(i.value.get("attempts") or {}).get(strategy) for i in items]
    scored = [m for m in marks if m is not None]
    return {"n": len(scored), "correct": sum(1 for m in scored if m)}


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


def task_evidence(store: BaseStore | None, task_id: str) -> dict[str, Any]:
    """Per-task evidence the router reads (empty without a store or before any measurement).

    Keys written by the nodes that measure them: ``loo_icl`` (leave-one-out ICL accuracy on the
    demonstrations), ``dg_diff`` (selection minus generation accuracy), ``reflect_gain``
    (held-out accuracy after reflection minus before), ``ttt_gain`` and per-strategy
    ``seconds`` (mean wall time).
    """
    if store is None:
        return {}
    item = store.get(EVIDENCE_NS, task_id)
    return dict(item.value) if item else {}


def update_evidence(store: BaseStore | None, task_id: str, **values: Any) -> dict[str, Any]:
    """Merge ``values`` into the task's stored evidence (a no-op without a store); returns it."""
    evidence = task_evidence(store, task_id) | values
    if store is not None:
        store.put(EVIDENCE_NS, task_id, evidence)
    return evidence


def add_task_notes(store: BaseStore | None, task_id: str, notes: list[str]) -> list[str]:
    """Append ``notes`` (deduplicated, order kept) to the task's stored notes; returns them all."""
    kept = task_notes(store, task_id)
    for note in notes:
        if note and note not in kept:
            kept.append(note)
    if store is not None:
        store.put(NOTES_NS, task_id, {"notes": kept})
    return kept


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


def task_examples(store: BaseStore | None, task_id: str) -> list[dict[str, Any]]:
    """Labelled examples added to a task after it was written (by an expert): ``{input, output}``."""
    if store is None:
        return []
    items = store.search((*EXAMPLES_NS, task_id), limit=1000)
    return [{"input": i.value["input"], "output": i.value["output"]} for i in items]


def add_task_example(store: BaseStore | None, task_id: str, value: Any, output: Any, **meta: Any) -> None:
    """Record a labelled example for the task (keyed by its input, so a later answer replaces it)."""
    if store is not None:
        store.put((*EXAMPLES_NS, task_id), query_key(value), {"input": value, "output": output, **meta})


def model_evidence(store: BaseStore | None, model: str) -> dict[str, dict[str, Any]]:
    """This model's mean gain over ICL (and how many queries it is over) and mean (seconds, tokens)
    per strategy, over all tasks."""
    item = store.get(MODEL_EVIDENCE_NS, model) if store is not None else None
    raw = item.value if item else {}
    gains = {s: round(total / n, 4) for s, (n, total) in (raw.get("gains") or {}).items() if n}
    gain_n = {s: int(n) for s, (n, _) in (raw.get("gains") or {}).items() if n}
    costs = {
        s: [round(sec / n, 4), round(tok / n, 1)]
        for s, (n, sec, tok) in (raw.get("costs") or {}).items()
        if n
    }
    return {"gains": gains, "gain_n": gain_n, "costs": costs}


def record_model_evidence(
    store: BaseStore | None, model: str, *, gains: dict[str, float], costs: dict[str, tuple[float, int]]
) -> None:
    """Add one query's observed gains and costs per strategy to the model's running sums."""
    if store is None:
        return
    item = store.get(MODEL_EVIDENCE_NS, model)
    raw = dict(item.value) if item else {}
    sums_g = dict(raw.get("gains") or {})
    for s, gain in gains.items():
        n, total = sums_g.get(s, [0, 0.0])
        sums_g[s] = [n + 1, total + gain]
    sums_c = dict(raw.get("costs") or {})
    for s, (seconds, tokens) in costs.items():
        n, sec, tok = sums_c.get(s, [0, 0.0, 0])
        sums_c[s] = [n + 1, sec + seconds, tok + tokens]
    store.put(MODEL_EVIDENCE_NS, model, {"gains": sums_g, "costs": sums_c})
