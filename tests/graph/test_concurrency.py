"""Two real processes on one database: no lost store update, and one resume of a waiting run.

Each race test starts two Python processes that import the project, open the same SQLite file,
say they are ready and wait for a shared "go" file, so their work overlaps for real. On
PostgreSQL a thread's lease is a session advisory lock: exclusive, and gone with its process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from graph.memory import MODEL_EVIDENCE_NS, add_task_notes, task_notes
from graph.storage import ThreadLeases, open_checkpointer, open_store
from tests.graph.test_review_web import make_waiting

ROOT = Path(__file__).resolve().parents[2]


def race(tmp_path: Path, body: str, *, workers: int = 2, timeout: float = 240) -> list[str]:
    """Run ``body`` in ``workers`` processes at once (after both are ready); their stdout lines."""
    go = tmp_path / "go"
    script = textwrap.dedent(
        """
        import json, sys, time
        from pathlib import Path
        name, go = sys.argv[1], Path(sys.argv[2])
        {setup}
        (go.parent / f"ready-{{name}}").write_text("1")
        while not go.exists():
            time.sleep(0.01)
        {run}
        """
    )
    setup, _, run = body.partition("# --- race ---")
    code = script.format(setup=textwrap.indent(textwrap.dedent(setup), "").strip(),
                         run=textwrap.dedent(run).strip())  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i), str(go)],
            cwd=tmp_path,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(workers)
    ]
    deadline = time.monotonic() + timeout
    while not all((tmp_path / f"ready-{i}").exists() for i in range(workers)):
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        assert time.monotonic() < deadline, "workers did not get ready"
        time.sleep(0.05)
    go.write_text("go")
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]
        outs.append(out.strip())
    return outs


def test_concurrent_store_updates_from_two_processes_lose_nothing(tmp_path):
    db = tmp_path / "mb.sqlite"
    open_store(db)  # created before the race
    race(
        tmp_path,
        f"""
        from graph.storage import open_store
        from graph.memory import add_task_notes, record_model_evidence
        store = open_store(Path({str(db)!r}))
        # --- race ---
        for i in range(60):
            record_model_evidence(store, "m", gains={{"select": 1.0}}, costs={{"select": (0.5, 10)}},
                                  task_type="toy")
            add_task_notes(store, "t", [f"note {{name}}-{{i}}"])
        """,
    )
    store = open_store(db)
    value = store.get(MODEL_EVIDENCE_NS, "m").value
    assert value["gains"]["select"] == [120, 120.0, 120.0]  # 2 processes x 60 updates, none lost
    assert value["costs"]["select"][0] == 120
    assert len(task_notes(store, "t")) == 120
    assert add_task_notes(store, "t", ["note 0-0"]) == task_notes(store, "t")  # no duplicates added


def test_two_processes_resuming_one_waiting_run_resume_it_once(tmp_path):
    db = tmp_path / "mb.sqlite"
    make_waiting(db)
    outs = race(
        tmp_path,
        f"""
        from graph.reviewer import Reviewer
        from graph.errors import InvalidInputError
        from tests.graph.conftest import ScriptedBackend

        class Slow(ScriptedBackend):
            def generate(self, prompt, **kw):
                time.sleep(1.5)  # re-predicting after the note takes a while: the other one tries now
                return super().generate(prompt, **kw)

        reviewer = Reviewer(Path({str(db)!r}), model=Slow(["9807\\n"]))
        reply = {{"action": "note", "note": f"from reviewer {{name}}", "expert": f"r{{name}}"}}
        # --- race ---
        try:
            result = reviewer.resume("w1", reply)
            print(json.dumps({{"status": result.status, "expert": result.expert}}))
        except InvalidInputError as exc:
            print(json.dumps({{"refused": str(exc)}}))
        """,
    )
    results = [json.loads(o) for o in outs]
    done = [r for r in results if "status" in r]
    refused = [r["refused"] for r in results if "refused" in r]
    assert len(done) == 1 and done[0]["status"] == "done", results
    assert len(refused) == 1, results
    assert "is running or resuming it now" in refused[0] or "not waiting for an expert" in refused[0]
    # exactly one reviewer's note reached the run
    state = open_checkpointer(db).get_tuple({"configurable": {"thread_id": "w1", "checkpoint_ns": ""}})
    assert (
        state is not None
        and state.checkpoint["channel_values"]["expert"]["expert"] == done[0]["expert"]["expert"]
    )


def test_a_lease_left_by_a_dead_process_is_taken_over(tmp_path):
    db = tmp_path / "mb.sqlite"
    open_checkpointer(db)
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(proc.stdout)
    leases = ThreadLeases(db)
    leases.conn.execute(
        "INSERT INTO mockingbird_thread_leases VALUES ('t', 'x', ?, ?, ?)",
        (dead_pid, __import__("socket").gethostname(), time.time()),
    )
    with leases.hold("t"):  # the holder is gone: no ThreadBusy
        row = leases.conn.execute("SELECT pid FROM mockingbird_thread_leases WHERE thread_id='t'").fetchone()
        assert row[0] == os.getpid()
    assert leases.conn.execute("SELECT COUNT(*) FROM mockingbird_thread_leases").fetchone()[0] == 0


def test_postgres_leases_are_exclusive_per_thread_and_schema(postgres):
    from graph.storage import PostgresThreadLeases, ThreadBusy, create_schema, parse_db

    url = postgres.new_database()
    leases = ThreadLeases.for_saver(open_checkpointer(url))
    assert isinstance(leases, PostgresThreadLeases)
    other_schema = PostgresThreadLeases(create_schema(parse_db(url), "scratch"))
    with leases.hold("t"):
        busy = pytest.raises(ThreadBusy, match="thread t: another process is running or resuming it")
        with busy, leases.hold("t"):  # a second session (another process would have one too)
            pass
        with leases.hold("u"), other_schema.hold("t"):  # another thread; the same id in another schema
            pass
    with leases.hold("t"):  # given back when the block ended
        pass


def test_a_postgres_lease_dies_with_its_process_and_a_busy_thread_is_refused(postgres, task):
    from graph.builder import build_graph
    from graph.context import Context
    from graph.runner import ThreadBusyError, run_query
    from tests.graph.conftest import ScriptedBackend

    url = postgres.new_database()
    saver = open_checkpointer(url)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            f"""
            import sys, time
            from graph.storage import ThreadLeases, open_checkpointer
            with ThreadLeases.for_saver(open_checkpointer({url!r})).hold("t"):
                print("held", flush=True)
                time.sleep(600)
            """
        )],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        model = ScriptedBackend(["9807\n"])
        g = build_graph(model=model, checkpointer=saver, store=open_store(url))
        ctx = Context(strategy="icl", samples=1)
        with pytest.raises(ThreadBusyError, match="thread t: another process is running or resuming it"):
            run_query(g, task, 0, context=ctx, thread_id="t")
        assert model.calls == []  # refused before anything ran
    finally:
        holder.kill()  # SIGKILL: no clean-up of ours runs; the server ends the session and its lock
        holder.wait()
    deadline = time.monotonic() + 30
    while True:
        try:
            result = run_query(g, task, 0, context=ctx, thread_id="t")
            break
        except ThreadBusyError:
            assert time.monotonic() < deadline, "the dead process's lease was never released"
            time.sleep(0.1)
    assert result.answer is not None
