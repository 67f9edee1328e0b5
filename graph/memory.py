"""Long-term memory: the store's namespaces and every read and update of them, in one module.

Nodes, the runner and the front doors read and write task memory (notes, outcomes, evidence,
expert examples), the router's per-model evidence and the run records only through these
functions, so a namespace's layout is decided here. Read-modify-writes go through
:func:`update_item`, atomic across threads and, with :class:`graph.storage.MockingbirdStore`,
across processes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from langgraph.store.base import BaseStore
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    StrictBool,
)

from tasks.schema import Task

#: Namespaces of the long-term store (one per kind of task memory).
NOTES_NS = ("mockingbird", "notes")
OUTCOMES_NS = ("mockingbird", "outcomes")
EVIDENCE_NS = ("mockingbird", "evidence")
EXAMPLES_NS = ("mockingbird", "examples")
MODEL_EVIDENCE_NS = ("mockingbird", "model_evidence")
#: Per (model, task type): gains over ICL on tasks of that type (the router's middle level).
TYPE_EVIDENCE_NS = ("mockingbird", "type_evidence")
#: Old task ids (file stems) whose memory was moved to a task's memory key: id -> {to, items, at}.
MIGRATED_NS = ("mockingbird", "migrated")
#: One record per finished query (thread id -> its answer), written by ``finalize``.
FINISHED_NS = ("mockingbird", "finished")
#: One record per run (thread id -> task, query index, context), written when a run starts:
#: LangGraph does not persist the runtime context, and a run that waits for an expert is resumed
#: later, often by another process (``graph.review``), which needs the same knobs.
RUNS_NS = ("mockingbird", "runs")


class TaskNotes(BaseModel):
    """A task's notes (``NOTES_NS``, key: the task's memory key): rules, hints, corrections."""

    notes: list[str]


class LabelledExample(BaseModel):
    """An example an expert labelled (``EXAMPLES_NS`` + task key, key: its input)."""

    model_config = ConfigDict(extra="allow")  # who gave it and when ride along

    input: Any
    output: Any
    expert: str | None = None


class LooMeasurement(BaseModel):
    """Leave-one-out ICL on the demonstrations, and what it was measured with (``key``)."""

    model_config = ConfigDict(extra="allow")

    acc: float = Field(ge=0, le=1)
    n: int = Field(ge=0)
    key: str


class TaskEvidence(BaseModel):
    """What the router reads about one task (``EVIDENCE_NS``, key: the task's memory key).

    Each node merges its own fields; fields no node wrote yet are absent in the stored value.
    Unknown fields are kept (a store written by an older version may hold some).
    """

    model_config = ConfigDict(extra="allow")

    loo: LooMeasurement | None = None
    dg_diff: float | None = Field(None, ge=-1, le=1)  # selection minus generation accuracy
    select_acc: float | None = Field(None, ge=0, le=1)
    gen_acc: float | None = Field(None, ge=0, le=1)
    dg_n: int | None = Field(None, ge=0)
    dg_model: str | None = None
    reflect_gain: float | None = Field(None, ge=-1, le=1)  # held-out accuracy after minus before
    reflect_acc_before: float | None = Field(None, ge=0, le=1)
    reflect_acc_after: float | None = Field(None, ge=0, le=1)
    reflect_n: int | None = Field(None, ge=0)
    reflect_model: str | None = None
    #: strategy -> [queries, summed gain over ICL, summed squared gain] (older records: no squares)
    observed: dict[str, list[float]] | None = None


def _checked_evidence(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` after checking it is valid evidence (stored as given: only set fields exist)."""
    TaskEvidence.model_validate(value)
    return value


def memory_key(task: Task | dict[str, Any]) -> str:
    """The store key of a task's long-term memory (:attr:`tasks.schema.Task.key`), also for a
    task dict that does not carry one yet."""
    if isinstance(task, Task):
        return task.key
    return str(task.get("key") or Task.model_validate(task).key)


def migrate_legacy_memory(store: BaseStore | None, task: Task) -> int:
    """Move memory kept under the task's bare id (stores written before tasks had memory keys)
    to its memory key; returns how many items moved.

    Several tasks may share an old id (``a/data.csv`` and ``b/data.csv`` were both ``data``): the
    first task that runs claims that memory, recorded in :data:`MIGRATED_NS`, and the others
    start fresh rather than inherit another task's notes, examples and evidence. An item already
    present under the new key is kept, not overwritten.
    """
    if store is None or task.key == task.id or store.get(MIGRATED_NS, task.id) is not None:
        return 0
    moved = 0
    for ns in (NOTES_NS, EVIDENCE_NS):
        item = store.get(ns, task.id)
        if item is not None:
            if store.get(ns, task.key) is None:
                store.put(ns, task.key, item.value)
            store.delete(ns, task.id)
            moved += 1
    for ns in (OUTCOMES_NS, EXAMPLES_NS):
        for item in store.search((*ns, task.id), limit=100_000):
            if tuple(item.namespace) != (*ns, task.id):
                continue
            if store.get((*ns, task.key), item.key) is None:
                store.put((*ns, task.key), item.key, item.value)
            store.delete((*ns, task.id), item.key)
            moved += 1
    store.put(
        MIGRATED_NS,
        task.id,
        {"to": task.key, "items": moved, "at": datetime.now(UTC).isoformat(timespec="seconds")},
    )
    return moved


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


def task_evidence(store: BaseStore | None, task_id: str) -> dict[str, Any]:
    """Per-task evidence the router reads (empty without a store or before any measurement).

    Fields (:class:`TaskEvidence`), written by the nodes that measure them: ``loo`` (leave-one-out
    ICL accuracy on the demonstrations), ``dg_diff`` (selection minus generation accuracy),
    ``reflect_gain`` (held-out accuracy after reflection minus before) and ``observed`` (per
    strategy, the queries and summed gain over ICL seen so far).
    """
    if store is None:
        return {}
    item = store.get(EVIDENCE_NS, task_id)
    return dict(item.value) if item else {}


#: Serialises read-modify-writes of stores without a transaction of their own (in-process stores).
_UPDATE_LOCK = threading.Lock()


def update_item(
    store: BaseStore,
    namespace: tuple[str, ...],
    key: str,
    update: Callable[[dict[str, Any] | None], dict[str, Any]],
) -> dict[str, Any]:
    """Replace an item by ``update(old value or None)`` without losing a concurrent update.

    The SQLite store does it in one transaction (other processes wait); other stores, which live
    in one process, under a lock. Returns the new value.
    """
    atomic = getattr(store, "atomic_update", None)
    if atomic is not None:
        return dict(atomic(namespace, key, update))
    with _UPDATE_LOCK:
        item = store.get(namespace, key)
        new = update(dict(item.value) if item is not None else None)
        store.put(namespace, key, new)
        return new


def update_evidence(store: BaseStore | None, task_id: str, **values: Any) -> dict[str, Any]:
    """Merge ``values`` into the task's stored evidence (a no-op without a store); returns it."""
    if store is None:
        return dict(values)
    return update_item(store, EVIDENCE_NS, task_id, lambda old: _checked_evidence((old or {}) | values))


def add_observed_gains(store: BaseStore | None, task_id: str, gains: dict[str, float]) -> None:
    """Add one query's observed gain over ICL per strategy to the task's running sums."""
    if store is None or not gains:
        return

    def add(old: dict[str, Any] | None) -> dict[str, Any]:
        evidence = old or {}
        return _checked_evidence(evidence | {"observed": _add_gains(evidence.get("observed") or {}, gains)})

    update_item(store, EVIDENCE_NS, task_id, add)


def add_task_notes(store: BaseStore | None, task_id: str, notes: list[str]) -> list[str]:
    """Append ``notes`` (deduplicated, order kept) to the task's stored notes; returns them all."""

    def add(old: dict[str, Any] | None) -> dict[str, Any]:
        kept = list((old or {}).get("notes", []))
        kept += [n for n in dict.fromkeys(notes) if n and n not in kept]
        return TaskNotes(notes=kept).model_dump()

    if store is None:
        return add(None)["notes"]
    return list(update_item(store, NOTES_NS, task_id, add)["notes"])


def task_examples(store: BaseStore | None, task_id: str) -> list[dict[str, Any]]:
    """Labelled examples added to a task after it was written (by an expert): ``{input, output}``."""
    if store is None:
        return []
    items = store.search((*EXAMPLES_NS, task_id), limit=1000)
    return [{"input": i.value["input"], "output": i.value["output"]} for i in items]


def add_task_example(store: BaseStore | None, task_id: str, value: Any, output: Any, **meta: Any) -> None:
    """Record a labelled example for the task (keyed by its input, so a later answer replaces it)."""
    if store is not None:
        example = LabelledExample.model_validate({"input": value, "output": output, **meta})
        store.put(
            (*EXAMPLES_NS, task_id), query_key(value), example.model_dump(mode="json", exclude_unset=True)
        )


def full_gain_sum(value: Any) -> Any:
    """A gain sum written before squares were kept (``[n, total]``) with its squares assumed to be
    ``n``: every gain +-1, the largest spread a per-query gain can have, so an old record is trusted
    no more than the noisiest new one."""
    if isinstance(value, list | tuple) and len(value) == 2:
        return (value[0], value[1], float(value[0]))
    return value


#: A strategy's running gain sums: ``[queries, summed gain over ICL, summed squared gain]``; the
#: squares give the spread of the gains, which decides how much a type's or a task's own record
#: is trusted (:func:`graph.router.level_weight`).
GainSum = Annotated[tuple[NonNegativeInt, float, NonNegativeFloat], BeforeValidator(full_gain_sum)]
#: A strategy's running cost sums: ``[queries, summed seconds, summed tokens]``.
CostSum = tuple[NonNegativeInt, NonNegativeFloat, NonNegativeInt]


class ModelEvidence(BaseModel):
    """A model's running sums over all tasks (``MODEL_EVIDENCE_NS``, key: the model's name).

    Unknown fields are kept (a store written by an older version may hold some).
    """

    model_config = ConfigDict(extra="allow")

    gains: dict[str, GainSum] = Field(default_factory=dict)  # strategy -> gain sums
    costs: dict[str, CostSum] = Field(default_factory=dict)  # strategy -> cost sums


class TypeEvidence(BaseModel):
    """A model's gain sums over the tasks of one type (``TYPE_EVIDENCE_NS``, key: ``model|type``):
    the router's middle level between one task and all tasks.

    Unknown fields are kept (a store written by an older version may hold some).
    """

    model_config = ConfigDict(extra="allow")

    gains: dict[str, GainSum] = Field(default_factory=dict)  # strategy -> gain sums


def model_evidence_sums(store: BaseStore | None, model: str) -> ModelEvidence:
    """The model's stored running sums (empty without a store or before any query)."""
    item = store.get(MODEL_EVIDENCE_NS, model) if store is not None else None
    return ModelEvidence.model_validate(item.value if item else {})


def type_evidence_sums(store: BaseStore | None, model: str, task_type: str) -> TypeEvidence:
    """The model's stored gain sums over tasks of ``task_type`` (empty before any query)."""
    item = store.get(TYPE_EVIDENCE_NS, _type_key(model, task_type)) if store is not None else None
    return TypeEvidence.model_validate(item.value if item else {})


def model_evidence(
    store: BaseStore | None, model: str, task_type: str | None = None
) -> dict[str, dict[str, Any]]:
    """This model's mean gain over ICL per strategy (``gains``, over ``gain_n`` queries, with the
    mean squared gain in ``gain_sq``) and mean (seconds, tokens) per strategy (``costs``), over all
    tasks; with ``task_type``, the same gains over the tasks of that type (``type_gains``,
    ``type_gain_n``, ``type_gain_sq``); and ``type_spread``: per strategy, how far the true gains of
    this model's task types differ (:func:`type_spread`)."""
    sums = model_evidence_sums(store, model)
    gains, gain_n, gain_sq = _means(sums.gains)
    costs = {s: [round(sec / n, 4), round(tok / n, 1)] for s, (n, sec, tok) in sums.costs.items() if n}
    typed = type_evidence_sums(store, model, task_type) if task_type else TypeEvidence()
    type_gains, type_gain_n, type_gain_sq = _means(typed.gains)
    return {
        "gains": gains,
        "gain_n": gain_n,
        "gain_sq": gain_sq,
        "costs": costs,
        "type_gains": type_gains,
        "type_gain_n": type_gain_n,
        "type_gain_sq": type_gain_sq,
        "type_spread": type_spread(store, model),
    }


#: Task types read at most when estimating :func:`type_spread` (the most recently updated first
#: where the store orders them; more than enough for a method-of-moments estimate).
SPREAD_TYPES = 1000


def type_spread(store: BaseStore | None, model: str) -> dict[str, dict[str, float]]:
    """Per strategy, the evidence on how much this model's task types differ in their true gain:
    ``{"between": variance of the types' mean gains beyond what their sampling noise explains
    (method of moments, may be <= 0), "types": how many types it rests on}``; types with fewer than
    two recorded queries are left out. The router blends it with a prior
    (:func:`graph.router.spread_of`): tables, whose types gain alike, pool their records; grid
    types, where an adapter solves one type and never another, each keep their own."""
    if store is None:
        return {}
    per: dict[str, list[tuple[int, float, float]]] = {}
    prefix = f"{model}|"
    for item in store.search(TYPE_EVIDENCE_NS, limit=SPREAD_TYPES):
        if not item.key.startswith(prefix):
            continue
        for s, (n, total, sq) in TypeEvidence.model_validate(item.value).gains.items():
            if n >= 2:
                per.setdefault(s, []).append((int(n), float(total), float(sq)))
    out = {}
    for s, rows in per.items():
        means = [t / n for n, t, _ in rows]
        # unbiased within-type variance over n: the sampling variance of each type's mean
        noise = [max(0.0, (q - n * m * m) / (n - 1)) / n for (n, _, q), m in zip(rows, means, strict=True)]
        centre = sum(means) / len(means)
        spread = sum((m - centre) ** 2 for m in means) / len(means) - sum(noise) / len(noise)
        out[s] = {"between": round(spread, 6), "types": len(rows)}
    return out


def _means(sums: dict[str, GainSum]) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
    """Running ``[n, total, squares]`` sums per strategy as means, counts and mean squares
    (strategies with n > 0)."""
    means = {s: round(total / n, 4) for s, (n, total, _) in sums.items() if n}
    squares = {s: round(sq / n, 4) for s, (n, _, sq) in sums.items() if n}
    return means, {s: int(n) for s, (n, _, _) in sums.items() if n}, squares


def _type_key(model: str, task_type: str) -> str:
    return f"{model}|{task_type}"


def _add_gains(sums: dict[str, Any], gains: dict[str, float]) -> dict[str, Any]:
    out = dict(sums)
    for s, gain in gains.items():
        n, total, squares = full_gain_sum(out.get(s, [0, 0.0, 0.0]))
        out[s] = [n + 1, total + gain, squares + gain * gain]
    return out


def record_model_evidence(
    store: BaseStore | None,
    model: str,
    *,
    gains: dict[str, float],
    costs: dict[str, tuple[float, int]],
    task_type: str | None = None,
) -> None:
    """Add one query's observed gains and costs per strategy to the model's running sums (and its
    gains to the sums of the task's type, when it has one). Both records are checked before they
    are stored."""
    if store is None:
        return

    def add(old: dict[str, Any] | None) -> dict[str, Any]:
        sums = ModelEvidence.model_validate(old or {})
        sums_c: dict[str, Any] = dict(sums.costs)
        for s, (seconds, tokens) in costs.items():
            n, sec, tok = sums_c.get(s, (0, 0.0, 0))
            sums_c[s] = (n + 1, sec + seconds, tok + tokens)
        new = sums.model_dump() | {"gains": _add_gains(sums.gains, gains), "costs": sums_c}
        return ModelEvidence.model_validate(new).model_dump(mode="json")

    def add_typed(old: dict[str, Any] | None) -> dict[str, Any]:
        sums = TypeEvidence.model_validate(old or {})
        new = sums.model_dump() | {"gains": _add_gains(sums.gains, gains)}
        return TypeEvidence.model_validate(new).model_dump(mode="json")

    update_item(store, MODEL_EVIDENCE_NS, model, add)
    if task_type and gains:
        update_item(store, TYPE_EVIDENCE_NS, _type_key(model, task_type), add_typed)


# --- typed records of runs and outcomes ---------------------------------------------------------


class RunRecord(BaseModel):
    """What a run was started with (``RUNS_NS``, key: thread id): resuming it later needs them."""

    task_id: str
    task_key: str
    query_index: int
    context: dict[str, Any]
    started: str  # ISO time, seconds


class Outcome(BaseModel):
    """One query's outcome (``OUTCOMES_NS`` + task key, key: the query): the router's evidence."""

    strategy: str | None
    correct: StrictBool | None  # strict: a stray "yes" or 1 must not count as a right answer
    attempts: dict[str, StrictBool | None]  # each strategy tried, scored on its own
    confidence: float | None
    at: str  # ISO time, seconds


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_run(
    store: BaseStore, thread_id: str, task: Task, query_index: int, context: dict[str, Any]
) -> None:
    """Record the start of a run on ``thread_id``."""
    record = RunRecord(
        task_id=task.id, task_key=task.key, query_index=query_index, context=context, started=_now()
    )
    store.put(RUNS_NS, thread_id, record.model_dump(mode="json"))


def run_of(store: BaseStore | None, thread_id: str) -> dict[str, Any] | None:
    """The record of the run on ``thread_id`` (``None`` if unknown)."""
    item = store.get(RUNS_NS, thread_id) if store is not None else None
    return dict(item.value) if item else None


def finished_run(store: BaseStore | None, run: str) -> dict[str, Any] | None:
    """The final result ``finalize`` recorded for run ``run`` (``None`` if it did not finish)."""
    item = store.get(FINISHED_NS, run) if store is not None else None
    return dict(item.value) if item else None


def record_finished(store: BaseStore, run: str, result: dict[str, Any]) -> None:
    """Record run ``run``'s final result (once: a resumed run checks :func:`finished_run` first)."""
    store.put(FINISHED_NS, run, result)


def record_outcome(
    store: BaseStore,
    task_key: str,
    query: Any,
    *,
    strategy: str | None,
    correct: bool | None,
    attempts: dict[str, bool | None],
    confidence: float | None,
) -> None:
    """Record one query's outcome for the router's evidence in later queries of the task."""
    outcome = Outcome(strategy=strategy, correct=correct, attempts=attempts, confidence=confidence, at=_now())
    store.put((*OUTCOMES_NS, task_key), query_key(query), outcome.model_dump(mode="json"))
