"""``finalize``: score the answer against the target and record the outcome in long-term memory.

The outcome is recorded **once per run**, however often the node runs: a process killed after
``finalize`` wrote to the store but before LangGraph checkpointed its completion re-runs it on
resume (with ``durability="exit"``, the whole run), and counting the query's evidence again
would skew the router. So every write of the node goes to the store in one transaction together
with a record of the finished run keyed by its thread (:data:`FINISHED_NS`); a run that finds its
record has been counted already. ``graph.runner.run_query`` also returns that record for a thread
whose final checkpoint was lost (found by ``python -m graph.chaos --family kill``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore, GetOp, Item, Op, PutOp, Result

from graph.context import Context
from graph.memory import (
    add_observed_gains,
    finished_run,
    memory_key,
    record_finished,
    record_model_evidence,
    record_outcome,
)
from graph.router import gain_key
from graph.state import State
from nodes.common import cost_entry
from tasks.scoring import is_correct

#: The result fields a finished-run record keeps (what ``run_query`` reports).
RESULT_KEYS = (
    "answer", "confidence", "strategy", "reason", "candidates", "costs", "attempts", "decisions", "expert",
)  # fmt: skip


def finalize(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Scoring where a target exists (exact match; within tolerance for regression) and an outcome
    record for the router."""
    started = time.perf_counter()
    task = state["task"]
    query = state["query"]
    target = query.get("target")
    correct = None if target is None else is_correct(task, state.get("answer"), target)
    store = runtime.store if runtime else None
    run = run_key()
    counted = run is not None and finished_run(store, run) is not None
    if store is not None and not counted:
        real, store = store, DeferredStore(store)  # every write below lands in one transaction
        # Outcomes are the router's evidence in later queries of this task (one record per query).
        record_outcome(
            store,
            memory_key(task),
            query["input"],
            strategy=state.get("strategy"),
            correct=correct,
            # each strategy tried, scored on its own, so ICL's record is not hidden by escalation
            attempts={
                a["strategy"]: None if target is None else is_correct(task, a["answer"], target)
                for a in state.get("attempts", [])
            },
            confidence=state.get("confidence"),
        )
        _learn(store, state, target)
        if run is not None:
            record_finished(store, run, {k: state.get(k) for k in RESULT_KEYS} | {"correct": correct})
        store.commit()
        store = real
    verdict = "no target" if correct is None else ("correct" if correct else "wrong")
    note = " (outcome recorded before this resumed run: not counted again)" if counted else ""
    return {
        "correct": correct,
        "costs": [cost_entry("finalize", started)],
        "trace": [{"node": "finalize", "message": f"answer {verdict}{note}"}],
    }


def run_key() -> str | None:
    """The key of the running query's run: its thread id (and the parent graph's namespace when
    embedded); ``None`` without a checkpointer, where a run never re-runs."""
    from langgraph.config import get_config

    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # called outside a run
        return None
    thread = configurable.get("thread_id")
    if not thread:
        return None
    # This task's own namespace ends with "finalize:<task id>", which changes when a run is
    # re-run from scratch; the parent's part names the run.
    parent = str(configurable.get("checkpoint_ns") or "").rpartition("|")[0]
    return f"{thread}|{parent}" if parent else str(thread)


class DeferredStore(BaseStore):
    """A view of a store whose writes wait for :meth:`commit`, which applies them in one batch
    (one SQLite transaction: all or none survive a kill). Reads see the view's own writes."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store
        self.writes: dict[tuple[tuple[str, ...], str], PutOp] = {}
        # read-modify-writes, replayed at commit on the store's values of that moment: computing
        # them from the view's reads would lose another process's update in between
        self._views: dict[tuple[tuple[str, ...], str], PutOp] = {}
        self.updates: list[
            tuple[tuple[str, ...], str, Callable[[dict[str, Any] | None], dict[str, Any]]]
        ] = []

    def atomic_update(
        self, namespace: tuple[str, ...], key: str, update: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Apply ``update`` to the view now (later reads see it) and replay it atomically at commit."""
        item = self.get(namespace, key)
        new = update(dict(item.value) if item is not None else None)
        self.writes.pop((tuple(namespace), key), None)
        self.batch([PutOp(namespace, key, new)])
        view = self.writes.pop((tuple(namespace), key))
        self.updates.append((tuple(namespace), key, update))
        self._views[(tuple(namespace), key)] = view
        return new

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        for op in ops:
            if isinstance(op, PutOp):
                self.writes[(tuple(op.namespace), op.key)] = op
                results.append(None)
            elif isinstance(op, GetOp) and (
                (tuple(op.namespace), op.key) in self.writes or (tuple(op.namespace), op.key) in self._views
            ):
                put = (
                    self.writes.get((tuple(op.namespace), op.key))
                    or self._views[(tuple(op.namespace), op.key)]
                )
                now = datetime.now(UTC)
                if put.value is None:  # a deletion
                    results.append(None)
                else:
                    value = dict(put.value)
                    results.append(Item(value=value, key=op.key, namespace=op.namespace, created_at=now,
                                        updated_at=now))  # fmt: skip
            else:
                results.extend(self.store.batch([op]))
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return self.batch(ops)

    def commit(self) -> None:
        """Apply every write: the plain writes in one batch, then each read-modify-write atomically
        on the store's current value (no concurrent update is lost)."""
        from graph.memory import update_item

        together = getattr(self.store, "atomic_commit", None)
        if together is not None:  # SQLite: one transaction for everything
            together(list(self.writes.values()), list(self.updates))
        else:  # in-memory (one process) and PostgreSQL stores: each update atomic on its own
            for namespace, key, update in self.updates:
                update_item(self.store, namespace, key, update)
            if self.writes:
                self.store.batch(list(self.writes.values()))
        self.writes.clear()
        self.updates.clear()
        self._views.clear()


def _learn(store: Any, state: State, target: Any) -> None:
    """Update the router's evidence from this query: each strategy's gain over ICL and its cost.

    A strategy's observed gain is its exact match minus ICL's on the same query (ICL's
    leave-one-out accuracy when ICL did not run), so TTT chosen directly still teaches the router.
    Gains are recorded under the kind of escalation (``ttt`` or ``ttt@agreed``, see
    :data:`graph.router.Band`), which the router estimates apart.
    """
    task, evidence = state["task"], state.get("evidence") or {}
    attempts = [a for a in state.get("attempts", []) if a["strategy"] != "expert"]
    model = evidence.get("model")
    if not attempts or not model:
        return
    costs = {a["strategy"]: (a["seconds"], a["tokens"]) for a in attempts}
    gains: dict[str, float] = {}
    if target is not None:
        hit = {a["strategy"]: float(is_correct(task, a["answer"], target)) for a in attempts}
        baseline = hit.get("icl", evidence.get("loo_icl"))
        if baseline is not None:
            band = evidence.get("band", "unsure")
            gains = {gain_key(s, band): h - float(baseline) for s, h in hit.items() if s != "icl"}
    add_observed_gains(store, memory_key(task), gains)
    record_model_evidence(store, model, gains=gains, costs=costs, task_type=task.get("type"))
