"""Real child processes, started fast: a fork server with the heavy modules already imported.

An interpreter that imports torch, transformers, peft and LangGraph takes 5-20 s on a busy
2-core machine; the families need hundreds of processes. ``multiprocessing``'s *forkserver*
start method imports them once in a clean, single-threaded server process and forks every child
from it, so a child starts in milliseconds and is still a real process: it has its own pid and
memory, can be SIGKILLed, and shares no state with the parent or its siblings (no model is
loaded, no database opened before the fork).

A child runs ``module:function(spec, out_dir, ready)``; its stdout and stderr go to files, the
function's return value (a JSON-able dict) to ``result.json`` and its ``"exit"`` key, if any, is
the exit code. ``ready`` is an event the child sets once it is about to do the work (a timed
kill counts from there, not from the fork). As with any ``multiprocessing`` start method but
fork, a script that uses this must guard its entry point (``if __name__ == "__main__":``): each
child imports the parent's main module.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graph.chaos.tiny import mirror_task, task_json

if TYPE_CHECKING:
    from graph.chaos import Recorder

#: Imported once by the fork server (import errors are ignored there; the child imports again).
PRELOAD = [
    "torch",
    "transformers",
    "peft",
    "langgraph.graph",
    "langgraph.checkpoint.sqlite",
    "langchain_openai",
    "graph.builder",
    "graph.run",
    "graph.review",
    "graph.review_web",
    "graph.chaos.worker",
    "models.hf_backend",
    "models.ttt",
    "models.openai_backend",
]


@dataclass
class ChildResult:
    """How a child ended and what it left."""

    exitcode: int | None
    stdout: str
    stderr: str
    result: dict[str, Any] | None
    seconds: float
    timed_out: bool = False

    @property
    def killed(self) -> bool:
        """Ended by SIGKILL (ours, or the kernel's)."""
        return self.exitcode == -signal.SIGKILL

    @property
    def error_lines(self) -> list[str]:
        """Non-empty stderr lines."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def _entry(target: str, spec: dict[str, Any], out_dir: str, ready: Any) -> None:
    """In the child: redirect output, run the target, store its result.

    The child's settings are the suite's own: ``MOCKINGBIRD_*`` and ``OPENAI_*`` variables of
    whoever started the suite are dropped (a case sets what it needs through ``spec["env"]``),
    so a developer's shell or CI's environment cannot change what a case measures.
    """
    for name in [n for n in os.environ if n.startswith(("MOCKINGBIRD_", "OPENAI_"))]:
        del os.environ[name]
    out = Path(out_dir)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        handle = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    result = fn(spec, out, ready)
    ready.set()
    (out / "result.json").write_text(json.dumps(result, default=str), encoding="utf-8")
    sys.stdout.flush()
    sys.stderr.flush()
    code = result.get("exit", 0) if isinstance(result, dict) else 0
    sys.exit(int(code))


class Children:
    """Starts children from a fork server and collects what they leave.

    Args:
        workdir: Where each child's output folder is made.
        preload: Modules the fork server imports once.
    """

    def __init__(self, workdir: Path, preload: list[str] | None = None) -> None:
        self.workdir = workdir
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(list(PRELOAD if preload is None else preload))

    def run(
        self,
        target: str,
        spec: dict[str, Any],
        *,
        timeout_s: float,
        kill_after_s: float | None = None,
    ) -> ChildResult:
        """Run ``target`` in a child; SIGKILL it ``kill_after_s`` after it is ready, if given.

        A child still running at ``timeout_s`` is killed and reported as timed out.
        """
        out_dir = tempfile.mkdtemp(prefix="child-", dir=self.workdir)
        ready = self.ctx.Event()
        started = time.monotonic()
        proc = self.ctx.Process(target=_entry, args=(target, spec, out_dir, ready), daemon=True)
        proc.start()
        timed_out = False
        if kill_after_s is not None:
            if ready.wait(timeout_s):
                time.sleep(kill_after_s)
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGKILL)
        proc.join(max(0.0, timeout_s - (time.monotonic() - started)))
        if proc.is_alive():
            timed_out = True
            proc.kill()
            proc.join()
        out = Path(out_dir)
        result = None
        if (out / "result.json").exists():
            result = json.loads((out / "result.json").read_text(encoding="utf-8"))
        return ChildResult(
            exitcode=proc.exitcode,
            stdout=_read(out / "stdout"),
            stderr=_read(out / "stderr"),
            result=result,
            seconds=round(time.monotonic() - started, 3),
            timed_out=timed_out,
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def noop(spec: dict[str, Any], out: Path, ready: Any) -> dict[str, Any]:
    """A child that does nothing (starts the fork server)."""
    return {}


def scratch_dir(parent: Path, prefix: str) -> Path:
    """A fresh folder under ``parent``."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def start_waiting_run(
    children: Children, rec: Recorder, db: Path, ckpt: Path, thread: str, seed: int
) -> bool:
    """Run the mirror task on the tiny checkpoint ``ckpt`` in a child until it waits for an expert.

    The run keeps its checkpoints in ``db`` under ``thread`` (durability ``sync``).

    Returns:
        Whether the run is waiting; if not, a lost setup case is recorded in ``rec``.
    """
    spec = {
        "db": str(db),
        "thread": thread,
        "task": task_json(mirror_task()),
        "durability": "sync",
        "context": {"model": f"hf:{ckpt}", "strategy": "expert", "samples": 1, "seed": seed},
    }
    first = children.run("graph.chaos.worker:graph_case", spec, timeout_s=120)
    if first.result is not None and first.result["result"]["status"] == "waiting":
        return True
    with rec.case("setup: a run waiting for an expert") as out:
        out["detail"] = f"setup failed: {(first.error_lines or ['?'])[-1]}"
    return False
