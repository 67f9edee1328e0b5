"""What the chaos families' child processes run (see :mod:`graph.chaos.procs`).

``graph_case`` runs one query through the real graph, checkpointer and store (as ``graph.run``
does) with *kill points* armed: counting wrappers around the checkpointer's ``put`` /
``put_writes``, the store's writes, the model's ``generate`` and the test-time training steps,
one of which may SIGKILL the process at its n-th call. ``cli_case`` runs a CLI's ``main`` and
measures the process's peak memory. Both only ever run inside a child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

#: Kill point kinds: where in a run a child SIGKILLs itself.
KILL_KINDS = ("ckpt-before", "ckpt-after", "writes-after", "store-after", "model", "ttt")


def die() -> None:
    """SIGKILL this process: no cleanup, no flush, as a power cut or the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


def reset_peak_rss() -> None:
    """Start measuring peak memory from now (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (``VmHWM``, ``VmRSS``) in MiB, where /proc tells it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM) in MiB, where /proc tells it."""
    return _status_mb("VmHWM")


def rss_mb() -> float | None:
    """This process's resident memory now, in MiB."""
    return _status_mb("VmRSS")


class KillPoints:
    """Counting wrappers on the run's moving parts; one may kill the process.

    Args:
        kill: ``{"kind": one of KILL_KINDS, "n": 1-based call, "delay": seconds}`` or ``None``
            (count only). ``model`` kills ``delay`` seconds after the n-th ``generate`` starts
            (inside the call when it lasts that long); ``ttt`` at the n-th training step.
    """

    def __init__(self, kill: dict[str, Any] | None) -> None:
        self.kill = kill or {}
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _hit(self, kind: str) -> bool:
        with self.lock:
            self.counts[kind] += 1
            n = self.counts[kind]
        return self.kill.get("n") == n

    def install(self) -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.store.base import PutOp
        from langgraph.store.sqlite import SqliteStore

        import models.ttt
        from models.hf_backend import HFBackend

        kind = self.kill.get("kind")
        put, put_writes, batch = SqliteSaver.put, SqliteSaver.put_writes, SqliteStore.batch
        generate, run_ttt = HFBackend.generate, models.ttt.run_ttt
        points = self

        def put_(self: Any, *args: Any, **kwargs: Any) -> Any:
            hit = points._hit("ckpt")
            if hit and kind == "ckpt-before":
                die()
            out = put(self, *args, **kwargs)
            if hit and kind == "ckpt-after":
                die()
            return out

        def put_writes_(self: Any, *args: Any, **kwargs: Any) -> Any:
            out = put_writes(self, *args, **kwargs)
            if points._hit("writes") and kind == "writes-after":
                die()
            return out

        def batch_(self: Any, ops: Any) -> Any:
            ops = list(ops)
            out = batch(self, ops)
            if any(isinstance(op, PutOp) for op in ops) and points._hit("store") and kind == "store-after":
                die()
            return out

        def generate_(self: Any, *args: Any, **kwargs: Any) -> Any:
            if points._hit("model") and kind == "model":
                timer = threading.Timer(float(points.kill.get("delay", 0.0)), die)
                timer.daemon = True
                timer.start()
            return generate(self, *args, **kwargs)

        def run_ttt_(model: Any, task: Any, query: Any, cfg: Any, on_step: Any = None) -> Any:
            def step(*args: Any) -> None:
                if points._hit("ttt") and kind == "ttt":
                    die()
                if on_step is not None:
                    on_step(*args)

            return run_ttt(model, task, query, cfg, on_step=step)

        SqliteSaver.put = put_  # type: ignore[method-assign]
        SqliteSaver.put_writes = put_writes_  # type: ignore[method-assign]
        SqliteStore.batch = batch_  # type: ignore[method-assign]
        HFBackend.generate = generate_  # type: ignore[method-assign]
        models.ttt.run_ttt = run_ttt_


def ledger(store: Any) -> dict[str, Any]:
    """Every record of the long-term store except run records, with what varies between runs
    (wall times, timestamps, reasons quoting them) masked: two runs that learned the same things
    have equal ledgers, and evidence counted twice shows as a larger count."""
    from graph.memory import FINISHED_NS, RUNS_NS

    out: dict[str, Any] = {}
    for ns in store.list_namespaces(prefix=("mockingbird",), limit=1000):
        if tuple(ns) == RUNS_NS:
            continue
        for item in store.search(ns, limit=10000):
            value = item.value
            if tuple(ns) == FINISHED_NS:  # the answer; its costs and traces differ after a resume
                value = {k: value.get(k) for k in ("answer", "confidence", "correct", "strategy")}
            out["/".join(ns) + "/" + item.key] = _mask(value)
    return out


def _mask(value: Any, key: str = "") -> Any:
    if key in ("at", "started", "seconds", "reason") or key.endswith(("_seconds", "_s")):
        return "~"
    if isinstance(value, dict):
        if key == "costs":  # strategy -> [n, seconds, tokens]: the count is exact, the tokens not
            # (a resumed TTT reuses the adapter cached on disk before the kill: no training tokens)
            return {
                s: [v[0], "~", "~"] if isinstance(v, list) and len(v) == 3 else _mask(v)
                for s, v in value.items()
            }
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def answer_of(result: dict[str, Any]) -> dict[str, Any]:
    """The parts of a query result that an interrupted run must reproduce exactly."""
    return {
        "status": result.get("status"),
        "answer": result.get("answer"),
        "correct": result.get("correct"),
        "strategy": result.get("strategy"),
        "confidence": round(float(result.get("confidence") or 0.0), 6),
        "candidates": [(c.get("answer"), c.get("votes")) for c in result.get("candidates", [])],
        "attempts": [(a["strategy"], a["answer"]) for a in result.get("attempts", [])],
        "decisions": [d["strategy"] for d in result.get("decisions", [])],
        "expert": (result.get("expert") or {}).get("action"),
    }


def graph_case(spec: dict[str, Any], out: Path, ready: Any) -> dict[str, Any]:
    """One query through the graph, as ``graph.run`` runs it, with kill points armed.

    ``spec``: ``db``, ``thread``, ``task`` (task JSON), ``context`` (Context fields),
    ``durability``, ``kill`` (see :class:`KillPoints`), ``mode`` (``run``: start or resume the
    thread; ``answer``: give ``reply`` to a run waiting for an expert, or continue it if it no
    longer waits), ``hold_s`` (``run``: stay alive this long once the run waits, like a person
    at the prompt), ``ready_at`` (``start``, or ``waiting``: when a timed kill starts counting).
    """
    from graph.builder import build_graph
    from graph.context import Context
    from graph.reviewer import Reviewer
    from graph.runner import run_query
    from graph.storage import open_checkpointer, open_store
    from models.factory import load_model
    from tasks.schema import Task

    points = KillPoints(spec.get("kill"))
    points.install()
    db = Path(spec["db"])
    ctx = Context(**spec["context"])
    task = Task.model_validate(spec["task"])
    thread = spec["thread"]
    durability = spec.get("durability")
    started = time.monotonic()
    if spec.get("mode") == "answer":
        reviewer = Reviewer(db)
        ready.set()
        if reviewer.waiting(thread=thread):
            result = reviewer.resume(thread, spec["reply"])
        else:  # the reply was applied before a crash: continue the thread, as graph.run --thread does
            result = run_query(reviewer.graph, task, 0, context=ctx, thread_id=thread, durability=durability)
        store = reviewer.graph.store
    else:
        model = load_model(ctx.model)
        store = open_store(db)
        graph = build_graph(model=model, checkpointer=open_checkpointer(db), store=store)
        if spec.get("ready_at", "start") == "start":
            ready.set()
        started = time.monotonic()
        result = run_query(graph, task, 0, context=ctx, thread_id=thread, durability=durability)
        if result.status == "waiting" and spec.get("hold_s"):
            ready.set()  # "ready_at": "waiting": a timed kill counts from here
            time.sleep(float(spec["hold_s"]))
    return {
        "result": result.model_dump(mode="json"),
        "counts": dict(points.counts),
        "seconds": round(time.monotonic() - started, 3),
        "ledger": ledger(store),
    }


def cli_case(spec: dict[str, Any], out: Path, ready: Any) -> dict[str, Any]:
    """Run ``spec["module"]``'s ``main(spec["argv"])`` with ``spec["env"]`` set; exit code and
    peak memory above the starting point (MiB)."""
    import importlib

    for name, value in (spec.get("env") or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    main = importlib.import_module(spec["module"]).main
    reset_peak_rss()
    before = rss_mb()
    ready.set()
    code = main(list(spec["argv"]))
    peak = peak_rss_mb()
    grown = None if peak is None or before is None else round(peak - before, 1)
    return {"exit": int(code or 0), "code": int(code or 0), "peak_growth_mb": grown}
