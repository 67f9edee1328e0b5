"""Family ``tamper``: tampered checkpoint bytes, and user-supplied keys near ``list()``.

A real run that waits for an expert leaves a SQLite database with checkpoints and pending writes
(the interrupt among them). Each case copies it and tampers with it: msgpack extension objects
that would call ``os.system`` to create a *canary* file (constructor, method and pydantic
forms, in the checkpoint and in a pending write), a pickle payload under a forged ``pickle``
type, a LangChain JSON constructor, random byte flips, truncations and broken metadata. Then,
in fresh child processes, ``python -m graph.review --list`` and ``python -m graph.run --thread``
read the database. A case survives when the canary was never created and each command either
works or fails with one ``error:`` line and no traceback.

The filter-key cases run the entry points that take user text (``graph.review --task/--thread``,
``graph.run --thread``, ``Reviewer.waiting``) with SQL-injection strings while recording every
``SqliteSaver.list`` / ``get_state_history`` call: none may carry a filter; a source scan finds
no ``list(..., filter=...)`` outside constants; and the pinned checkpointer itself refuses a
hostile filter key (CVE-2025-67644) without touching the database.
"""

from __future__ import annotations

import ast
import pickle
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from graph.chaos import Env, FamilyReport
from graph.chaos.procs import Children, ChildResult, scratch_dir, start_waiting_run
from graph.chaos.tiny import build_tiny_checkpoint, mirror_task, write_task

THREAD = "tamper-thread"
EVIL = "x') OR 1=1; DROP TABLE checkpoints; --"
#: Constructor codes of LangGraph's msgpack extensions (``langgraph.checkpoint.serde.jsonplus``).
EXT_CONSTRUCTOR_SINGLE_ARG, EXT_CONSTRUCTOR_POS_ARGS, EXT_METHOD_SINGLE_ARG, EXT_PYDANTIC_V2 = 0, 1, 3, 5


class _Canary:
    """Pickles to ``os.system("touch CANARY")``: what a pickle-trusting loader would run."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (self.command,))


def _ext(code: int, parts: tuple[Any, ...]) -> Any:
    import ormsgpack

    return ormsgpack.Ext(code, ormsgpack.packb(parts))


def _decode(blob: bytes) -> Any:
    import ormsgpack

    return ormsgpack.unpackb(
        blob, ext_hook=lambda c, d: ormsgpack.Ext(c, d), option=ormsgpack.OPT_NON_STR_KEYS
    )


def _encode(value: Any) -> bytes:
    import ormsgpack

    return ormsgpack.packb(value, option=ormsgpack.OPT_NON_STR_KEYS)


def _latest(conn: sqlite3.Connection) -> tuple[str, bytes]:
    return conn.execute(
        "SELECT checkpoint_id, checkpoint FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
        "ORDER BY checkpoint_id DESC LIMIT 1",
        (THREAD,),
    ).fetchone()


def tamperings(canary: Path) -> list[tuple[str, Any]]:
    """(name, function(conn, rng)) for each way of tampering with the database."""
    cmd = f"touch {canary}"
    payloads = {
        "os.system constructor": _ext(EXT_CONSTRUCTOR_SINGLE_ARG, ("os", "system", cmd)),
        "os.system positional constructor": _ext(EXT_CONSTRUCTOR_POS_ARGS, ("os", "system", [cmd])),
        "subprocess method call": _ext(EXT_METHOD_SINGLE_ARG, ("subprocess", "getoutput", cmd, "strip")),
        "pydantic model of os.system": _ext(EXT_PYDANTIC_V2, ("os", "system", {"command": cmd}, None)),
    }

    def inject(where: str, payload: Any) -> Any:
        def fn(conn: sqlite3.Connection, rng: random.Random) -> None:
            if where == "checkpoint":
                cid, blob = _latest(conn)
                data = _decode(blob)
                data["channel_values"]["task"] = payload
                conn.execute(
                    "UPDATE checkpoints SET checkpoint = ? WHERE checkpoint_id = ?", (_encode(data), cid)
                )
            else:  # the pending interrupt's value, which graph.review reads first
                conn.execute(
                    "UPDATE writes SET type = 'msgpack', value = ? WHERE channel = '__interrupt__'",
                    (_encode([payload]),),
                )

        return fn

    def forged_type(kind: str, blob: bytes) -> Any:
        def fn(conn: sqlite3.Connection, rng: random.Random) -> None:
            cid, _ = _latest(conn)
            conn.execute(
                "UPDATE checkpoints SET type = ?, checkpoint = ? WHERE checkpoint_id = ?", (kind, blob, cid)
            )

        return fn

    def flips(n: int) -> Any:
        def fn(conn: sqlite3.Connection, rng: random.Random) -> None:
            cid, blob = _latest(conn)
            raw = bytearray(blob)
            for _ in range(n):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            conn.execute("UPDATE checkpoints SET checkpoint = ? WHERE checkpoint_id = ?", (bytes(raw), cid))

        return fn

    def truncate(conn: sqlite3.Connection, rng: random.Random) -> None:
        cid, blob = _latest(conn)
        cut = blob[: rng.randrange(1, len(blob))]
        conn.execute("UPDATE checkpoints SET checkpoint = ? WHERE checkpoint_id = ?", (cut, cid))

    def metadata(conn: sqlite3.Connection, rng: random.Random) -> None:
        cid, _ = _latest(conn)
        conn.execute("UPDATE checkpoints SET metadata = ? WHERE checkpoint_id = ?", (b'{"step": ', cid))

    def write_flips(conn: sqlite3.Connection, rng: random.Random) -> None:
        for rowid, value in conn.execute(
            "SELECT rowid, value FROM writes WHERE length(value) > 8"
        ).fetchall():
            raw = bytearray(value)
            raw[rng.randrange(len(raw))] = rng.randrange(256)
            conn.execute("UPDATE writes SET value = ? WHERE rowid = ?", (bytes(raw), rowid))

    lc_json = (
        b'{"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {"command": "'
        + cmd.encode()
        + b'"}}'
    )
    cases: list[tuple[str, Any]] = []
    for name, payload in payloads.items():
        cases.append((f"{name} in the checkpoint", inject("checkpoint", payload)))
        cases.append((f"{name} in the pending interrupt", inject("writes", payload)))
    cases += [
        ("pickle payload under a forged 'pickle' type", forged_type("pickle", pickle.dumps(_Canary(cmd)))),
        ("LangChain JSON constructor of os.system", forged_type("json", lc_json)),
        ("unknown serialization type", forged_type("marshal", b"\x00")),
        ("metadata not JSON", metadata),
        ("pending writes with flipped bytes", write_flips),
        ("truncated checkpoint", truncate),
    ]
    cases += [(f"{n} flipped byte(s) in the checkpoint #{i}", flips(n)) for i, n in enumerate((1, 2, 8, 32))]
    return cases


def _resume_argv(task_file: str, db: str, thread: str, model: str) -> list[str]:
    """``python -m graph.run``'s arguments that continue ``thread`` of ``db`` without waiting."""
    return [
        "--task", task_file, "--db", db, "--thread", thread, "--model", model,
        "--strategy", "expert", "--no-wait", "--quiet", "--samples", "1",
    ]  # fmt: skip


def _readers(db: Path, task_file: Path, ckpt: Path) -> list[tuple[str, dict[str, Any]]]:
    """The commands a user would run on the database, as child specs."""
    return [
        ("graph.review --list", {"module": "graph.review", "argv": ["--list", "--db", str(db)]}),
        (
            "graph.run --thread",
            {
                "module": "graph.run",
                "argv": _resume_argv(str(task_file), str(db), THREAD, f"hf:{ckpt}"),
            },
        ),
    ]


def _judge(child: ChildResult, what: str) -> str:
    """'' when the command behaved (worked, or one error line), else what went wrong."""
    if child.timed_out:
        return f"{what}: hung"
    if "Traceback" in child.stderr or child.exitcode not in (0, 1, 2):
        last = (child.error_lines or ["?"])[-1]
        return f"{what}: exit {child.exitcode}, traceback ({last[:140]})"
    errors = [line for line in child.error_lines if line.startswith("error:")]
    if child.exitcode != 0 and len(errors) != 1:
        return f"{what}: exit {child.exitcode} with {len(errors)} error lines"
    return ""


def run(env: Env) -> FamilyReport:
    rec = env.recorder("tamper")
    rng = random.Random(env.seed)
    children = Children(env.workdir)
    ckpt = build_tiny_checkpoint(env.workdir / "tiny")
    base = scratch_dir(env.workdir, "tamper-base-")
    pristine = base / "mb.sqlite"
    task_file = write_task(base / "task.json", mirror_task())
    if not start_waiting_run(children, rec, pristine, ckpt, THREAD, env.seed):
        return rec.report
    conn = sqlite3.connect(pristine)  # fold the WAL into the file, so a plain copy is complete
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    items = tamperings(base / "canary")
    rng.shuffle(items)
    if env.quick:
        items = items[:6]
    for name, tamper in items:
        if not rec.budget.allows(8):
            rec.report.skipped += 1
            continue
        with rec.case(name) as out:
            case_dir = scratch_dir(env.workdir, "tamper-")
            db, canary = case_dir / "mb.sqlite", base / "canary"
            shutil.copy(pristine, db)
            conn = sqlite3.connect(db)
            with conn:
                tamper(conn, rng)
            conn.close()
            problems = []
            for what, cli in _readers(db, task_file, ckpt):
                child = children.run(
                    "graph.chaos.worker:cli_case",
                    cli | {"env": {"LANGGRAPH_STRICT_MSGPACK": "true"}},
                    timeout_s=120,
                )
                problem = _judge(child, what)
                if problem:
                    problems.append(problem)
                elif child.exitcode:
                    said = child.error_lines[-1].rpartition("refused: ")[2] or child.error_lines[-1]
                    out.setdefault("said", []).append(f"{what}: exit {child.exitcode}, {said[:100]}")
            if canary.exists():
                problems.insert(0, "CODE RAN: the canary file was created")
                canary.unlink()
            out["ok"] = not problems
            said = " | ".join(out.get("said", []))
            out["detail"] = "; ".join(problems) or (
                f"refused: {said}" if said else "read as valid, no effect"
            )
    _filter_cases(rec, children, pristine, task_file, ckpt)
    return rec.report


# --- filter keys ----------------------------------------------------------------------------


def list_probe(spec: dict[str, Any], out: Path, ready: Any) -> dict[str, Any]:
    """In a child: record every checkpointer ``list`` / ``get_state_history`` filter while the
    entry points that take user text run with hostile values."""
    import contextlib
    import io

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.pregel import Pregel

    import graph.review
    import graph.reviewer
    import graph.run

    seen: list[Any] = []
    list_, history = SqliteSaver.list, Pregel.get_state_history

    def list_rec(self: Any, config: Any, *, filter: Any = None, **kwargs: Any) -> Any:
        seen.append(filter)
        return list_(self, config, filter=filter, **kwargs)

    def history_rec(self: Any, config: Any, *, filter: Any = None, **kwargs: Any) -> Any:
        seen.append(filter)
        return history(self, config, filter=filter, **kwargs)

    SqliteSaver.list = list_rec  # type: ignore[method-assign]
    Pregel.get_state_history = history_rec  # type: ignore[method-assign]
    ready.set()
    db, evil = spec["db"], spec["evil"]
    codes = []
    with contextlib.redirect_stdout(io.StringIO()):
        codes.append(graph.review.main(["--list", "--db", db, "--task", evil]))
        codes.append(graph.review.main(["--list", "--db", db, "--thread", evil]))
        codes.append(graph.review.main(["--db", db, "--thread", evil, "--expert", evil]))
        reviewer = graph.reviewer.Reviewer(Path(db))
        reviewer.waiting(task_id=evil)
        reviewer.waiting(thread=evil)
        reviewer._paused_threads_by_listing()  # the fallback path lists checkpoints: with no filter
        codes.append(graph.run.main(_resume_argv(spec["task_file"], db, evil, spec["model"])))
    return {"filters": [repr(f) for f in seen], "codes": codes}


def _scan_sources() -> list[str]:
    """``list(..., filter=...)`` / ``get_state_history(..., filter=...)`` calls in the package with
    a filter that is not a literal (a user value could flow into its keys)."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for pkg in ("graph", "nodes", "models", "tasks", "prompts"):
        for path in sorted((root / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                if node.func.attr not in ("list", "alist", "get_state_history", "aget_state_history"):
                    continue
                for kw in node.keywords:
                    if kw.arg == "filter" and not isinstance(kw.value, ast.Constant | ast.Dict):
                        found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def _filter_cases(rec: Any, children: Children, pristine: Path, task_file: Path, ckpt: Path) -> None:
    with rec.case("hostile --task/--thread/--expert: no filter reaches list()") as out:
        case_dir = scratch_dir(children.workdir, "filter-")
        db = case_dir / "mb.sqlite"
        shutil.copy(pristine, db)
        before = _census(db)
        spec = {"db": str(db), "evil": EVIL, "task_file": str(task_file), "model": f"hf:{ckpt}"}
        child = children.run("graph.chaos.tamper:list_probe", spec, timeout_s=180)
        if child.result is None:
            out["detail"] = f"probe failed: {(child.error_lines or ['?'])[-1][:200]}"
        else:
            filters = [f for f in child.result["filters"] if f not in ("None", "{}")]
            after = _census(db)
            lost_rows = {t: (before[t], after.get(t)) for t in before if (after.get(t) or 0) < before[t]}
            out["ok"] = not filters and not lost_rows
            out["detail"] = (
                f"filters seen: {filters}; "
                if filters
                else f"{len(child.result['filters'])} list() calls, none filtered; "
            ) + (
                f"rows lost: {lost_rows}"
                if lost_rows
                else f"exit codes {child.result['codes']}, database intact"
            )
    with rec.case("source scan: no list()/get_state_history() filter built from values") as out:
        found = _scan_sources()
        out["ok"], out["detail"] = (
            (not found),
            (", ".join(found) if found else "none in graph, nodes, models, tasks"),
        )
    with rec.case("pinned checkpointer refuses a hostile filter key (CVE-2025-67644)") as out:
        db = scratch_dir(children.workdir, "filter-pin-") / "mb.sqlite"
        shutil.copy(pristine, db)
        before = _census(db)
        from graph.storage import open_checkpointer

        saver = open_checkpointer(db)
        try:
            rows = list(saver.list(None, filter={EVIL: 1}))
            said = f"returned {len(rows)} checkpoints"
        except Exception as exc:  # refused: what the fixed version does
            rows, said = [], f"refused ({type(exc).__name__}: {str(exc)[:80]})"
        saver.conn.close()  # type: ignore[attr-defined]  # a SQLite file here
        after = _census(db)
        out["ok"] = not rows and after == before
        out["detail"] = said + ("" if after == before else f"; tables changed: {before} -> {after}")


def _census(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()
