"""Families ``kill`` and ``expert``: SIGKILL a run, resume it from a fresh process, compare.

For every durability mode an uninterrupted *reference* run (in a child, like every run here)
gives the final answer, the long-term store's records (the router's evidence, masked of wall
times) and how many checkpoints, store writes, model calls and training steps a run makes.
Each case then starts the same query on a fresh database in a child that SIGKILLs itself at a
random one of those points (or is SIGKILLed from outside after a random delay), and resumes it
by thread id in a new child. It survives when the resumed run ends with the reference's answer
and the store holds exactly the reference's records: evidence counted twice shows as a larger
count.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from graph.chaos import Env, FamilyReport
from graph.chaos.procs import Children, ChildResult, scratch_dir
from graph.chaos.tiny import build_tiny_checkpoint, mirror_task, task_json
from graph.chaos.worker import answer_of

DURABILITIES = ("sync", "async", "exit")
GRAPH_CASE = "graph.chaos.worker:graph_case"
#: Seconds one child may take before it counts as hung.
CHILD_TIMEOUT_S = 120.0


def _context(ckpt: Path, seed: int, strategy: str = "auto", **extra: Any) -> dict[str, Any]:
    """Small knobs: the router runs ICL, then test-time training (the tiny model fails ICL)."""
    return {
        "model": f"hf:{ckpt}",
        "strategy": strategy,
        "samples": 2,
        "ttt_steps": 8,
        "ttt_views": 2,
        "ttt_early_stop": False,
        # cost ignored: the router prices a strategy by its measured seconds, so under a loaded
        # CPU a resumed run could route differently from its reference (reflection first)
        "worth_s": 0.0,
        "seed": seed,
        **extra,
    }


def _diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    """The first differing keys of two dicts, shortly."""
    keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return "; ".join(f"{k}: got {got.get(k)!r}, expected {want.get(k)!r}" for k in keys[:3])


def _check(resumed: ChildResult, reference: dict[str, Any]) -> tuple[bool, str]:
    """Whether a resumed child ended as the reference did (answer and store records)."""
    if resumed.result is None:
        tail = resumed.error_lines[-1] if resumed.error_lines else f"exit {resumed.exitcode}"
        return False, f"resume failed: {tail}"
    got = answer_of(resumed.result["result"])
    want = answer_of(reference["result"])
    if got != want:
        return False, f"different answer after resume: {_diff(got, want)}"
    ledger, ref_ledger = resumed.result["ledger"], reference["ledger"]
    if ledger != ref_ledger:
        return (
            False,
            f"store differs from an uninterrupted run (evidence counted twice?): {_diff(ledger, ref_ledger)}",
        )
    return (
        True,
        f"resumed ({resumed.result['result'].get('resumed') or 'restarted'}), same answer and evidence",
    )


def _pick_kill(rng: random.Random, counts: dict[str, int], seconds: float) -> dict[str, Any]:
    """A random kill point among those the reference run passes through."""
    options = []
    if counts.get("ckpt"):
        options += ["ckpt-before", "ckpt-after"]
    if counts.get("writes"):
        options.append("writes-after")
    if counts.get("store"):
        options.append("store-after")
    if counts.get("model"):
        options.append("model")
    if counts.get("ttt"):
        options.append("ttt")
    options.append("time")
    kind = rng.choice(options)
    if kind == "time":
        return {"kind": "time", "delay": round(rng.uniform(0.0, max(seconds, 0.05)), 3)}
    base = {"ckpt-before": "ckpt", "ckpt-after": "ckpt", "writes-after": "writes", "store-after": "store"}
    total = counts[base.get(kind, kind)]
    kill: dict[str, Any] = {"kind": kind, "n": rng.randint(1, total)}
    if kind == "model":
        kill["delay"] = round(rng.uniform(0.0, 0.2), 3)
    return kill


def _kill_name(kill: dict[str, Any]) -> str:
    if kill["kind"] == "time":
        return f"SIGKILL after {kill['delay']:.2f}s"
    extra = f" +{kill['delay']:.2f}s" if kill["kind"] == "model" else ""
    return f"{kill['kind']} #{kill['n']}{extra}"


def _spawn(children: Children, spec: dict[str, Any], kill: dict[str, Any] | None) -> ChildResult:
    if kill and kill["kind"] == "time":
        return children.run(GRAPH_CASE, spec, timeout_s=CHILD_TIMEOUT_S, kill_after_s=kill["delay"])
    return children.run(GRAPH_CASE, spec | {"kill": kill}, timeout_s=CHILD_TIMEOUT_S)


def reference(children: Children, workdir: Path, ckpt: Path, seed: int, durability: str) -> ChildResult:
    """An uninterrupted run (in a child): the answer, store records and kill points to compare with."""
    case_dir = scratch_dir(workdir, f"kill-ref-{durability}-")
    spec = _spec(case_dir, task_json(mirror_task()), _context(ckpt, seed, ttt_cache=2), durability)
    return children.run(GRAPH_CASE, spec, timeout_s=CHILD_TIMEOUT_S)


def kill_case(
    children: Children, workdir: Path, ckpt: Path, seed: int, durability: str, kill: dict[str, Any],
    ref: dict[str, Any],
) -> tuple[bool, str]:  # fmt: skip
    """Run the query with ``kill`` armed on a fresh database, resume it in a fresh child, compare."""
    case_dir = scratch_dir(workdir, "kill-")
    context = _context(ckpt, seed, ttt_cache=2, ttt_cache_dir=str(case_dir / "adapters"))
    spec = _spec(case_dir, task_json(mirror_task()), context, durability)
    first = _spawn(children, spec, kill)
    if not first.killed and first.exitcode != 0:
        return False, f"run failed before the kill: {(first.error_lines or ['?'])[-1]}"
    ok, detail = _check(children.run(GRAPH_CASE, spec, timeout_s=CHILD_TIMEOUT_S), ref)
    return ok, detail if first.killed else "finished before the kill; " + detail


def run_kill(env: Env) -> FamilyReport:
    """SIGKILL at random points x durability; resume by thread id; same answer, no double evidence."""
    rec = env.recorder("kill")
    rng = random.Random(env.seed)
    children = Children(env.workdir)
    ckpt = build_tiny_checkpoint(env.workdir / "tiny")
    references: dict[str, dict[str, Any]] = {}
    for durability in DURABILITIES:
        with rec.case(f"{durability}: reference run") as out:
            done = reference(children, env.workdir, ckpt, env.seed, durability)
            if done.result is None:
                out["detail"] = f"reference run failed: {(done.error_lines or ['?'])[-1]}"
                continue
            references[durability] = done.result | {"wall": done.seconds}
            counts = done.result["counts"]
            attempts = "→".join(a["strategy"] for a in done.result["result"]["attempts"])
            out["ok"], out["detail"] = (
                True,
                f"{done.result['result']['strategy']} via {attempts}; counts {counts}",
            )
            rec.report.notes.append(f"{durability}: a run passes {counts} kill points")
    limit = 3 if env.quick else 60
    n = 0
    while references and n < limit:
        durability = DURABILITIES[n % len(DURABILITIES)]
        n += 1
        if durability not in references:
            continue
        ref = references[durability]
        if not rec.budget.allows(2 * ref["seconds"] + 6):
            rec.report.skipped += 1
            break
        kill = _pick_kill(rng, ref["counts"], ref["seconds"])
        with rec.case(f"{durability}: {_kill_name(kill)}") as out:
            out["ok"], out["detail"] = kill_case(children, env.workdir, ckpt, env.seed, durability, kill, ref)
    return rec.report


def _spec(
    case_dir: Path, task: dict[str, Any], context: dict[str, Any], durability: str | None
) -> dict[str, Any]:
    return {
        "db": str(case_dir / "mb.sqlite"),
        "thread": "chaos-thread",
        "task": task,
        "context": context,
        "durability": durability,
    }


# --- expert ---------------------------------------------------------------------------------

REPLY_KINDS = ("note", "answer", "accept")


def _reply(kind: str, first: dict[str, Any], target: Any) -> dict[str, Any] | None:
    """An expert's reply of ``kind`` to the waiting run ``first`` (``None`` if it cannot be given)."""
    if kind == "note":
        return {"action": "note", "note": "mirror the row: the last cell comes first", "expert": "chaos"}
    if kind == "answer":
        return {"action": "answer", "answer": target, "expert": "chaos"}
    cands = (first.get("review") or {}).get("candidates") or []
    ok = [i for i, c in enumerate(cands) if c.get("answer") is not None]
    return {"action": "accept", "candidate": ok[0], "expert": "chaos"} if ok else None


def run_expert(env: Env) -> FamilyReport:
    """A run waiting for an expert is killed (waiting, or while a reply is applied) and resumed
    from a fresh process; the final answer and the store must match an uninterrupted review."""
    rec = env.recorder("expert")
    rng = random.Random(env.seed + 1)
    children = Children(env.workdir)
    ckpt = build_tiny_checkpoint(env.workdir / "tiny")
    task_obj = mirror_task()
    task = task_json(task_obj)
    target = task_obj.test[0].target
    context = _context(ckpt, env.seed, strategy="expert")
    references: dict[str, dict[str, Any]] = {}
    replies: dict[str, dict[str, Any]] = {}
    for kind in REPLY_KINDS:
        with rec.case(f"reference: wait, then {kind}") as out:
            case_dir = scratch_dir(env.workdir, f"expert-ref-{kind}-")
            spec = _spec(case_dir, task, context, "sync")
            first = children.run(GRAPH_CASE, spec, timeout_s=CHILD_TIMEOUT_S)
            if first.result is None or first.result["result"]["status"] != "waiting":
                out["detail"] = f"the run did not wait for an expert: {(first.error_lines or ['?'])[-1:]}"
                continue
            reply = _reply(kind, first.result["result"], target)
            if reply is None:
                out["ok"], out["detail"] = (
                    True,
                    "no parseable candidate to accept: replies of this kind not tried",
                )
                rec.report.notes.append("accept: the tiny model's candidates did not parse; not tried")
                continue
            answer = spec | {"mode": "answer", "reply": reply}
            second = children.run(GRAPH_CASE, answer, timeout_s=CHILD_TIMEOUT_S)
            if second.result is None or second.result["result"]["status"] != "done":
                out["detail"] = f"resume failed: {(second.error_lines or ['?'])[-1:]}"
                continue
            references[kind], replies[kind] = second.result | {"wall": second.seconds}, reply
            out["ok"], out["detail"] = True, f"answer {second.result['result']['answer']}"
    kinds = sorted(references)
    limit = 2 if env.quick else 40
    n = 0
    while kinds and n < limit:
        kind = kinds[n % len(kinds)]
        n += 1
        ref = references[kind]
        if not rec.budget.allows(3 * ref["seconds"] + 8):
            rec.report.skipped += 1
            break
        case_dir = scratch_dir(env.workdir, f"expert-{n}-")
        spec = _spec(case_dir, task, context, "sync")
        answer = spec | {"mode": "answer", "reply": replies[kind]}
        if n % 2 == 1:  # killed while waiting (a person at the prompt, or the review page's server)
            delay = round(rng.uniform(0.0, 0.3), 3)
            with rec.case(f"{kind}: SIGKILL while waiting (+{delay:.2f}s), resumed fresh") as out:
                first = children.run(
                    GRAPH_CASE,
                    spec | {"hold_s": 60, "ready_at": "waiting"},
                    timeout_s=CHILD_TIMEOUT_S,
                    kill_after_s=delay,
                )
                if not first.killed:
                    out["detail"] = f"not killed while waiting (exit {first.exitcode})"
                    continue
                out["ok"], out["detail"] = _check(
                    children.run(GRAPH_CASE, answer, timeout_s=CHILD_TIMEOUT_S), ref
                )
        else:  # killed while the reply is being applied, then resumed again from a fresh process
            kill = _pick_kill(rng, ref["counts"], ref["seconds"])
            with rec.case(f"{kind}: reply applied, {_kill_name(kill)}, resumed fresh") as out:
                out["ok"], out["detail"] = reply_kill_case(
                    children, env.workdir, spec, replies[kind], kill, ref
                )
    if "answer" in references and rec.budget.allows(40):
        _real_cli_case(env, rec, children, task_obj, task, context, references["answer"])
    return rec.report


def expert_setup(
    children: Children, workdir: Path, ckpt: Path, seed: int, reply_kind: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(spec of a fresh waiting-run case, the reply, the reference result) for one kind of reply."""
    task_obj = mirror_task()
    context = _context(ckpt, seed, strategy="expert")
    ref_spec = _spec(scratch_dir(workdir, "expert-ref-"), task_json(task_obj), context, "sync")
    first = children.run(GRAPH_CASE, ref_spec, timeout_s=CHILD_TIMEOUT_S)
    if first.result is None:
        raise RuntimeError(f"the waiting run failed: {first.stderr[-500:]}")
    reply = _reply(reply_kind, first.result["result"], task_obj.test[0].target)
    if reply is None:
        raise RuntimeError(f"no {reply_kind} reply possible")
    done = children.run(GRAPH_CASE, ref_spec | {"mode": "answer", "reply": reply}, timeout_s=CHILD_TIMEOUT_S)
    if done.result is None:
        raise RuntimeError(f"the reply failed: {done.stderr[-500:]}")
    spec = _spec(scratch_dir(workdir, "expert-"), task_json(task_obj), context, "sync")
    return spec, reply, done.result


def reply_kill_case(
    children: Children, workdir: Path, spec: dict[str, Any], reply: dict[str, Any], kill: dict[str, Any],
    ref: dict[str, Any],
) -> tuple[bool, str]:  # fmt: skip
    """Start the run until it waits, apply ``reply`` in a child killed at ``kill``, then give the
    reply again from a fresh child (or continue the thread if it no longer waits); compare."""
    first = children.run(GRAPH_CASE, spec, timeout_s=CHILD_TIMEOUT_S)
    if first.result is None or first.result["result"]["status"] != "waiting":
        return False, "the run did not wait for an expert"
    answer = spec | {"mode": "answer", "reply": reply}
    killed = _spawn(children, answer, kill)
    if not killed.killed and killed.exitcode != 0:
        return False, f"reply failed before the kill: {(killed.error_lines or ['?'])[-1]}"
    return _check(children.run(GRAPH_CASE, answer, timeout_s=CHILD_TIMEOUT_S), ref)


def _real_cli_case(
    env: Env,
    rec: Any,
    children: Children,
    task_obj: Any,
    task: dict[str, Any],
    context: dict[str, Any],
    ref: dict[str, Any],
) -> None:
    """The whole way a user goes: the run waits and its process is killed; a new interpreter
    (``python -m graph.review --thread``, not a fork) takes the expert's answer at its prompt."""
    with rec.case("answer: SIGKILL while waiting, answered with python -m graph.review") as out:
        case_dir = scratch_dir(env.workdir, "expert-cli-")
        spec = _spec(case_dir, task, context, "sync")
        first = children.run(
            GRAPH_CASE,
            spec | {"hold_s": 60, "ready_at": "waiting"},
            timeout_s=CHILD_TIMEOUT_S,
            kill_after_s=0.1,
        )
        if not first.killed:
            out["detail"] = f"not killed while waiting (exit {first.exitcode})"
            return
        answer = f"answer {task_obj.test[0].target}\n"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "graph.review",
                "--db",
                spec["db"],
                "--thread",
                spec["thread"],
                "--expert",
                "chaos",
            ],
            input=answer,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        if proc.returncode != 0:
            out["detail"] = f"graph.review exit {proc.returncode}: {proc.stderr.strip()[-200:]}"
            return
        done = children.run(GRAPH_CASE, spec, timeout_s=CHILD_TIMEOUT_S)  # the finished thread's result
        out["ok"], out["detail"] = _check(done, ref)
