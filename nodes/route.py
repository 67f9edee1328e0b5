"""``route``: gather evidence and let the router decide what runs next for this query.

The graph comes back here after every strategy. The first visit measures what the router needs
and keeps it in the state: leave-one-out ICL accuracy on the demonstrations (``auto`` only;
cached per task, model and demonstrations in the store), the task's stored gains (DG-DIFF,
reflection gain, recorded TTT outcomes), this model's mean gains and costs over other tasks, and
the backend's capabilities. Every visit adds what the query has spent so far.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from graph.context import Context
from graph.memory import (
    full_gain_sum,
    model_evidence,
    query_key,
    task_evidence,
    task_outcomes,
    update_evidence,
)
from graph.router import RouterSettings, band_of, best_answer, decide, stop_confidence
from graph.state import Decision, State
from models.base import ModelBackend, Usage
from nodes.common import cost_entry, node_inputs
from nodes.icl import ICLPredictor
from nodes.loo import leave_one_out
from tasks.schema import Task
from tasks.scoring import is_correct

#: Leave-one-out predictions at most (their cost grows with the number of demonstrations).
LOO_MAX = 8


def make_route_node(
    bound: ModelBackend | None = None,
) -> Any:  # a LangGraph node (its overloads reject a Callable type)
    """Build the ``route`` node; ``bound`` is the graph's model (else the context's)."""

    def route(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        """Record the router's decision and the numbers behind it."""
        return _route(state, runtime, bound)

    return route


def measure_loo_icl(
    model: ModelBackend, task: Task, notes: list[str], *, max_demos: int = 0, seed: int = 0
) -> tuple[dict[str, Any], Usage]:
    """Leave-one-out ICL accuracy on the demonstrations (greedy, one sample each); a held-out
    demonstration's own correction notes are not in its prompt (:mod:`nodes.loo`).

    Returns:
        ``{"acc", "n", "call_s", "call_tokens"}`` and the usage spent measuring it.
    """
    usage, seconds, hits, n = Usage(), 0.0, 0, 0
    for _, example, rest, seen in leave_one_out(task, notes, limit=LOO_MAX):
        candidates, gen = ICLPredictor(model).forward(
            rest, example.input, notes=seen, samples=1, max_demos=max_demos, seed=seed
        )
        usage, seconds, n = usage + gen.usage, seconds + gen.seconds, n + 1
        answer = candidates[0]["answer"] if candidates else None
        hits += int(is_correct(task, answer, example.output))
    return {
        "acc": hits / n if n else 0.0,
        "n": n,
        "call_s": seconds / n if n else 0.0,
        "call_tokens": usage.total_tokens / n if n else 0.0,
    }, usage


def _loo(
    store: BaseStore | None, model: ModelBackend, task: Task, notes: list[str], ctx: Context
) -> tuple[dict[str, Any] | None, Usage]:
    """LOO-ICL for this task and model, from the store when the same demonstrations were measured."""
    if len(task.train) < 2:
        return None, Usage()
    key = query_key([model.name, [e.model_dump(mode="json") for e in task.train], notes, ctx.max_demos])
    cached = task_evidence(store, task.key).get("loo") or {}
    if cached.get("key") == key:
        return cached, Usage()
    measured, usage = measure_loo_icl(model, task, notes, max_demos=ctx.max_demos, seed=ctx.seed)
    update_evidence(store, task.key, loo=measured | {"key": key})
    return measured, usage


def _spent(state: State) -> tuple[float, int]:
    costs = state.get("costs", [])
    return (
        round(sum(c["seconds"] for c in costs), 4),
        sum(c["prompt_tokens"] + c["completion_tokens"] for c in costs),
    )


def _route(state: State, runtime: Runtime[Context], bound: ModelBackend | None) -> dict[str, Any]:
    started = time.perf_counter()
    ctx, task, model, store = node_inputs(state, runtime, bound)
    update: dict[str, Any] = {}
    usage = Usage()
    evidence = dict(state.get("evidence") or {})
    if not evidence:  # first visit: measure once per query
        stored = task_evidence(store, task.key)
        per_model = model_evidence(store, model.name, task.type)
        evidence = {
            "demos": len(task.train),
            "samples": ctx.samples,
            "reflect_rounds": ctx.reflect_rounds,
            "ttt_views": ctx.ttt_views,
            "outcomes": task_outcomes(store, task.key, "icl"),
            "model": model.name,
            "can_adapt": model.capabilities.adapt,
            "can_score": model.capabilities.score,
            "gains": task_gains(stored),
            "gain_n": task_gain_counts(stored),
            "gain_sq": task_gain_squares(stored),
            "model_gains": per_model["gains"],
            "model_gain_n": per_model["gain_n"],
            "model_gain_sq": per_model["gain_sq"],
            "type_gains": per_model["type_gains"],
            "type_gain_n": per_model["type_gain_n"],
            "type_gain_sq": per_model["type_gain_sq"],
            "type_spread": per_model["type_spread"],
            "costs": per_model["costs"],
        }
        if ctx.strategy == "auto":
            loo, usage = _loo(store, model, task, state.get("notes", []), ctx)
            if loo is not None:
                evidence |= {
                    "loo_icl": round(loo["acc"], 4),
                    "loo_n": loo["n"],
                    "icl_call_s": round(loo["call_s"], 4),
                    "icl_call_tokens": round(loo["call_tokens"], 1),
                }
    own = cost_entry("route", started, usage)
    spent_s, spent_tokens = _spent(state)
    if state.get("attempts"):  # the kind of escalation, for the router and for recording its gains
        evidence["band"] = band_of(state["attempts"], ctx.confidence_threshold)
        # A strategy may have just measured its gain on this task's demonstrations (reflection's
        # held-out gain, DG-DIFF): the next decision reads it, not the prior the first visit saw.
        # (Stale, reflection's prior +0.05 stood for the answer in hand after reflection had
        # measured +0.00, and kept TTT, expected +0.06, from being tried: `sort_numbers` query 1.)
        stored = task_evidence(store, task.key)
        evidence |= {
            "gains": task_gains(stored),
            "gain_n": task_gain_counts(stored),
            "gain_sq": task_gain_squares(stored),
        }
    evidence |= {
        "spent_s": round(spent_s + own["seconds"], 4),
        "spent_tokens": spent_tokens + usage.total_tokens,
    }
    settings = RouterSettings(
        confidence_threshold=ctx.confidence_threshold,
        margin=ctx.margin,
        worth_s=ctx.worth_s,
        budget_s=ctx.budget_s,
        budget_tokens=ctx.budget_tokens,
        expert_review=ctx.expert_review,
    )
    decision = decide(
        requested=ctx.strategy, evidence=evidence, attempts=state.get("attempts", []), settings=settings
    )
    if decision["strategy"] != "finalize":
        update |= {"strategy": decision["strategy"], "reason": decision["reason"]}
    elif ctx.strategy == "auto":  # say why the escalation stopped, after why it went where it did
        update["reason"] = f"{state.get('reason', '')}; then {decision['reason']}"
        attempts = state.get("attempts", [])
        band = evidence.get("band", "unsure")
        chosen = attempts[-1] if attempts else None
        if len(attempts) > 1:
            i, why = best_answer(attempts, evidence, band)
            chosen = attempts[i]
            if i != len(attempts) - 1:  # an earlier strategy's answer is better supported: keep it
                update |= {"answer": chosen["answer"], "strategy": chosen["strategy"]}
            update["reason"] += f"; kept the {why}"
            decision = Decision(
                strategy="finalize",
                reason=f"{decision['reason']}; kept the {why}",
                evidence=decision["evidence"],
            )
        if chosen is not None:
            # The confidence reported is the one the stop rule used, so four agreeing samples of a
            # strategy that fails a third of its demonstrations do not read as certain.
            update["confidence"] = round(stop_confidence(chosen, evidence, band), 4)
    return update | {
        "decision": decision,
        "decisions": [decision],
        "evidence": evidence,
        "costs": [own],
        "trace": [{"node": "route", "message": _trace_line(decision)}],
    }


def _verb(strategy: str) -> str:
    return "stop" if strategy == "finalize" else f"chose {strategy}"


def _trace_line(decision: Decision) -> str:
    """``chose ttt: <reason>`` (the router's own reasons already start so: not said twice)."""
    verb = _verb(decision["strategy"])
    reason = decision["reason"]
    return reason if reason.startswith(f"{verb}:") else f"{verb}: {reason}"


def task_gain_counts(stored: dict[str, Any]) -> dict[str, int]:
    """How many recorded queries each of :func:`task_gains`' outcome-based gains averages (a gain
    measured on the demonstrations, DG-DIFF or reflection's, has none: it is not averaged)."""
    counts = {s: int(n) for s, (n, *_) in (stored.get("observed") or {}).items() if n}
    if stored.get("dg_diff") is not None:
        counts.pop("select", None)
    if stored.get("reflect_gain") is not None:
        counts.pop("reflect", None)
    return counts


def task_gain_squares(stored: dict[str, Any]) -> dict[str, float]:
    """The mean squared gain of each of :func:`task_gain_counts`' recorded gains (their spread).

    A record written before squares were kept reads as gains of +-1 (:func:`graph.memory.full_gain_sum`)."""
    counts = task_gain_counts(stored)
    out = {}
    for s, value in (stored.get("observed") or {}).items():
        if s in counts:
            n, _, squares = full_gain_sum(value)
            out[s] = round(squares / n, 4)
    return out


def task_gains(stored: dict[str, Any]) -> dict[str, float]:
    """This task's measured gain over ICL per strategy (see ``graph.router``).

    Selection: DG-DIFF measured on the demonstrations, else recorded outcomes; reflection: the
    held-out accuracy gain of its notes, else recorded outcomes; TTT: recorded outcomes.
    """
    gains: dict[str, float] = {}
    observed = stored.get("observed") or {}
    for strategy, (n, total, *_) in observed.items():
        if n:
            gains[strategy] = round(total / n, 4)
    if stored.get("dg_diff") is not None:
        gains["select"] = float(stored["dg_diff"])
    if stored.get("reflect_gain") is not None:
        gains["reflect"] = float(stored["reflect_gain"])
    return gains
