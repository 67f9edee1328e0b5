"""Many workers, one state: ``graph.bench --workers N`` runs queries in N processes on one database.

Each worker is a separate process (``spawn``: no torch state is forked) that loads the model,
opens the shared checkpointer and store, and takes queries from a common queue until it is empty;
every run checkpoints on its own thread and updates the shared task memory (router evidence,
notes, outcomes) through :func:`graph.memory.update_item` (the stores' atomic updates), so
concurrent updates lose nothing.

Throughput is measured from the moment every worker has loaded its model to the last answer, so
model loading (seconds, once per process) is not counted. Afterwards the model's running sums in
the store are compared with what the results say was added: ``lost`` must be 0.

Every measured run starts from empty task memory on a scratch database of the ``--db`` backend:
a new schema on the PostgreSQL server (dropped afterwards), else a temporary SQLite file.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from graph.context import Context
from graph.errors import SettingsError
from graph.memory import model_evidence_sums
from graph.runner import QueryResult
from graph.storage import Database, close_pools, create_schema, drop_schema, open_store
from models.base import ModelError
from tasks.schema import Task

log = logging.getLogger(__name__)

#: Seconds a worker may take to load its model and open the database.
START_TIMEOUT_S = 600.0


class Throughput(BaseModel):
    """One measured run of ``--workers``: speed, and whether the shared state lost updates."""

    workers: int
    queries: int
    wall_s: float
    queries_per_s: float
    cpu_s: float
    evidence_expected: int
    evidence_stored: int

    @property
    def lost(self) -> int:
        return self.evidence_expected - self.evidence_stored


def parse_workers(raw: str | None) -> list[int]:
    """``--workers 2`` or ``--workers 1,2`` as a list of counts (empty when not given)."""
    if raw is None:
        return []
    try:
        counts = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise SettingsError(f"--workers: expected a count or a comma list such as 1,2, got {raw!r}") from None
    if not counts or any(n < 1 for n in counts):
        raise SettingsError(f"--workers: every count must be at least 1, got {raw!r}")
    return counts


@contextmanager
def scratch_database(base: Database | None) -> Iterator[Database]:
    """Empty task memory for one measured run, on ``base``'s backend; removed afterwards."""
    if base is not None and base.backend == "postgres":
        db = create_schema(base, f"mb_bench_{uuid.uuid4().hex[:12]}")
        try:
            yield db
        finally:
            drop_schema(db)
        return
    with tempfile.TemporaryDirectory(prefix="mb-bench-") as tmp:
        yield Database("sqlite", path=Path(tmp) / "bench.sqlite")


def _worker(
    worker: int,
    db: Database,
    ctx_fields: dict[str, Any],
    torch_threads: int,
    jobs: Any,
    out: Any,
    go: Any,
) -> None:
    """A worker process: load, say ready, wait for the start, answer queries until a ``None``."""
    try:
        import torch

        torch.set_num_threads(torch_threads)
        from graph.builder import build_graph
        from graph.context import resolve_model
        from graph.runner import run_query
        from graph.storage import open_checkpointer

        ctx = Context(**ctx_fields)
        graph = build_graph(
            model=resolve_model(ctx, None), checkpointer=open_checkpointer(db), store=open_store(db)
        )
    except Exception as exc:  # reported to the parent, which stops the run with one line
        out.put(("failed", worker, f"{type(exc).__name__}: {exc}"))
        return
    out.put(("ready", worker, None))
    go.wait()
    while (job := jobs.get()) is not None:
        i, task_json, index, thread = job
        try:
            result = run_query(graph, Task.model_validate(task_json), index, context=ctx, thread_id=thread)
            out.put(("result", i, result.model_dump(mode="json")))
        except Exception as exc:
            out.put(("error", i, f"{type(exc).__name__}: {exc}"))
    usage = os.times()
    out.put(("done", worker, usage.user + usage.system))
    close_pools()


def run_parallel(
    ctx: Context,
    jobs: list[tuple[Task, int]],
    db: Database,
    workers: int,
    *,
    model_name: str,
    on_result: Any = None,
) -> tuple[list[QueryResult], Throughput]:
    """Answer ``jobs`` in ``workers`` processes sharing ``db``; results in job order.

    Raises:
        ModelError: A worker failed to start, or a query failed (the first error, one line).
    """
    open_store(db)  # tables first, once, as a deployment would
    mp = multiprocessing.get_context("spawn")
    job_q, out_q, go = mp.Queue(), mp.Queue(), mp.Event()
    run_id = uuid.uuid4().hex[:8]
    for i, (task, index) in enumerate(jobs):
        job_q.put((i, task.model_dump(mode="json"), index, f"bench-{run_id}:{task.id}:{index}"))
    for _ in range(workers):
        job_q.put(None)
    # One torch thread per worker: processes use the cores. (Two intra-op threads in one worker on a
    # busy 2-core machine spin in OpenMP barriers and measured 6x slower per query than one.)
    threads = 1
    procs = [
        mp.Process(target=_worker, args=(w, db, ctx.model_dump(), threads, job_q, out_q, go), daemon=True)
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        _wait_ready(out_q, procs, workers)
        started = time.perf_counter()
        go.set()
        results: dict[int, QueryResult] = {}
        cpu = 0.0
        done = 0
        while done < workers:
            kind, key, payload = _get(out_q, procs)
            if kind == "result":
                results[key] = QueryResult.model_validate(payload)
                if on_result is not None:
                    on_result()
            elif kind == "error":
                raise ModelError(f"worker query {key} failed: {payload}")
            elif kind == "done":
                done += 1
                cpu += float(payload)
        wall = time.perf_counter() - started
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    ordered = [results[i] for i in range(len(jobs))]
    expected = sum(
        Counter(a["strategy"] for r in ordered for a in r.attempts if a["strategy"] != "expert").values()
    )
    return ordered, Throughput(
        workers=workers,
        queries=len(ordered),
        wall_s=round(wall, 3),
        queries_per_s=round(len(ordered) / wall, 3) if wall > 0 else 0.0,
        cpu_s=round(cpu, 2),
        evidence_expected=expected,
        evidence_stored=stored_cost_updates(db, model_name),
    )


def stored_cost_updates(db: Database, model_name: str) -> int:
    """How many strategy attempts the model's running cost sums in ``db`` hold."""
    costs = model_evidence_sums(open_store(db), model_name).costs
    return sum(n for n, _sec, _tok in costs.values())


def _wait_ready(out_q: Any, procs: list[Any], workers: int) -> None:
    ready = 0
    deadline = time.monotonic() + START_TIMEOUT_S
    while ready < workers:
        kind, worker, payload = _get(out_q, procs, deadline)
        if kind == "failed":
            raise ModelError(f"worker {worker} could not start: {payload}")
        ready += kind == "ready"


def _get(out_q: Any, procs: list[Any], deadline: float | None = None) -> tuple[str, Any, Any]:
    """The next message; fails with one line if every worker died without saying why."""
    while True:
        try:
            return out_q.get(timeout=1.0)
        except queue.Empty:
            if all(not p.is_alive() for p in procs):
                codes = [p.exitcode for p in procs]
                raise ModelError(f"bench workers exited unexpectedly (exit codes {codes})") from None
            if deadline is not None and time.monotonic() > deadline:
                raise ModelError(f"bench workers did not start within {START_TIMEOUT_S:.0f} s") from None
