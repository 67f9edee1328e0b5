"""``python -m graph.review`` and ``graph.run``'s handling of a paused run, as a person uses them.

The interactive sessions run in a real pseudo-terminal (``pexpect``), against a real SQLite
database where the test left runs waiting for an expert. The runs record ``hf:<tiny checkpoint>``
as their model, so the review process loads a real model when it has to predict again (a note).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

import pexpect  # the test extra: drives the terminal sessions
import pytest

from graph.builder import build_graph
from graph.context import Context
from graph.errors import InvalidInputError
from graph.memory import task_examples, task_notes
from graph.review import parse_command
from graph.reviewer import Reviewer
from graph.runner import run_query
from graph.storage import open_checkpointer, open_store
from tests.graph.conftest import ScriptedBackend, reverse_task
from tests.graph.test_cli import ROOT, assert_user_error, run_cli


def make_waiting(db: Path, model_spec: str, runs: dict[str, str]) -> None:
    """Leave runs waiting for an expert: thread -> task id (ICL disagreed with itself first)."""
    g = build_graph(model=ScriptedBackend(["0000\n", "9807\n"]), checkpointer=open_checkpointer(db),
                    store=open_store(db))  # fmt: skip
    ctx = Context(model=model_spec, strategy="expert", samples=2, sample_views="off")
    for thread, task_id in runs.items():
        assert run_query(g, reverse_task(task_id), 0, context=ctx, thread_id=thread).status == "waiting"


def final_state(db: Path, thread: str) -> dict[str, Any]:
    """The latest checkpointed state of ``thread``, read straight from SQLite."""
    saved = open_checkpointer(db).get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    assert saved is not None
    return dict(saved.checkpoint["channel_values"])


def spawn(*args: str, cwd: Path | None = None) -> Any:
    """A CLI in a pseudo-terminal, plain (no colour codes) and wide enough for a grid row."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOCKINGBIRD_", "OPENAI_"))}
    env.update({"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "160"})
    scratch = None if cwd else tempfile.mkdtemp(prefix="mb-review-")  # never the checkout
    child = pexpect.spawn(
        sys.executable, list(args), cwd=str(cwd or scratch), env=env,
        encoding="utf-8", timeout=60, dimensions=(60, 160),
    )  # fmt: skip
    if scratch:  # removed with the child (it runs on after this returns)
        weakref.finalize(child, shutil.rmtree, scratch, True)
    return child


PROMPT = r"reply \(accept N"


def test_parse_command_turns_a_prompt_line_into_a_reply():
    assert parse_command(" accept 1 ", expert="ada", task_kind="grid") == {
        "action": "accept", "candidate": 1, "expert": "ada"
    }  # fmt: skip
    assert parse_command("answer [[9, 8]]", expert="ada", task_kind="grid")["answer"] == [[9, 8]]
    assert parse_command("answer yes", expert="ada", task_kind="text")["answer"] == "yes"
    assert parse_command("note mirror it", expert="ada", task_kind="grid")["note"] == "mirror it"
    assert parse_command("skip", expert="ada", task_kind="grid") == "skip"
    for bad, why in [
        ("accept x", "candidate's number"),
        ("answer [[1", "not valid JSON"),
        ("hello", "unknown"),
    ]:
        with pytest.raises(InvalidInputError, match=why):
            parse_command(bad, expert="ada", task_kind="grid")


def test_waiting_runs_are_found_by_the_narrow_query_and_by_the_public_api_alike(db, tiny_checkpoint):
    make_waiting(db, f"hf:{tiny_checkpoint}", {"a": "reverse", "b": "reverse", "c": "other"})
    g = build_graph(
        model=ScriptedBackend(["9807\n"]), checkpointer=open_checkpointer(db), store=open_store(db)
    )
    run_query(g, reverse_task(), 1, context=Context(strategy="icl", samples=1), thread_id="finished")
    reviewer = Reviewer(db, model=ScriptedBackend(["9807\n"]))
    reviewer.resume("b", {"action": "accept", "candidate": 1, "expert": "ada"})
    assert sorted(reviewer._candidate_threads()) == ["a", "b", "c"]  # b paused once; it is done now
    assert sorted(reviewer._paused_threads_by_listing()) == ["a", "c"]
    assert [r.thread for r in reviewer.waiting()] == ["a", "c"]
    assert [r.thread for r in reviewer.waiting(task_id="other")] == ["c"]
    assert reviewer.waiting()[0].review["candidates"][1]["answer"] == [[9, 8, 0, 7]]


def test_list_shows_thread_task_query_and_age(db, tiny_checkpoint):
    make_waiting(db, f"hf:{tiny_checkpoint}", {"t1": "reverse", "t2": "other"})
    proc = run_cli("--db", str(db), "--list", module="graph.review")
    assert proc.returncode == 0, proc.stderr
    assert "2 run(s) waiting for an expert" in proc.stdout
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if re.match(r"\W*t[12] ", line)}
    assert set(lines) == {"t1", "t2"} and "reverse" in lines["t1"] and "other" in lines["t2"]
    assert "7089" in lines["t1"].replace(" ", "") and re.search(r"\d+ s", lines["t1"])


def test_user_mistakes_are_one_line(db, tiny_checkpoint, tmp_path):
    make_waiting(db, f"hf:{tiny_checkpoint}", {"t1": "reverse"})
    assert_user_error(run_cli("--db", str(db), "--batch", module="graph.review"), "--batch", "--task")
    assert_user_error(run_cli("--db", str(db), "--thread", "nope", module="graph.review"), "--thread", "nope")
    assert_user_error(
        run_cli("--db", str(tmp_path / "missing.sqlite"), module="graph.review"), "missing.sqlite"
    )


def test_a_terminal_session_answers_one_run_and_skips_another(db, tiny_checkpoint):
    make_waiting(db, f"hf:{tiny_checkpoint}", {"t1": "reverse", "t2": "reverse"})
    child = spawn("-m", "graph.review", "--db", str(db), "--expert", "ada")
    try:
        child.expect(r"1/2")
        child.expect(r"mirror\(grid\) -> grid")  # the task panel: the function and its demos
        child.expect(r"demonstrations")
        child.expect(r"thread t1")
        child.expect(PROMPT)
        child.sendline("accept 7")
        child.expect(r"candidate: must be 0\.\.1 for accept, got 7")  # one line; asked again
        child.expect(PROMPT)
        child.sendline("answer [[9, 8, 0, 12]]")
        child.expect(r"cell \[0\]\[3\] is 12")
        child.expect(PROMPT)
        child.sendline("answer [[9, 8, 0, 7]]")
        child.expect(r"thread t1: done")
        child.expect(r"correct")
        child.expect(r"2/2")
        child.expect(PROMPT)
        child.sendline("skip")
        child.expect(r"1 answered.*1 skipped")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    t1 = final_state(db, "t1")
    assert t1["expert"] == {"action": "answer", "answer": [[9, 8, 0, 7]], "expert": "ada"}
    assert t1["strategy"] == "expert" and t1["correct"] is True
    assert task_examples(open_store(db), reverse_task().key) == [
        {"input": [[7, 0, 8, 9]], "output": [[9, 8, 0, 7]]}
    ]
    assert [r.thread for r in Reviewer(db).waiting()] == ["t2"]  # skipped: still waiting


def test_batch_reviews_every_waiting_run_of_one_task_and_a_note_predicts_again(db, tiny_checkpoint):
    make_waiting(db, f"hf:{tiny_checkpoint}", {"r1": "reverse", "r2": "reverse", "o1": "other"})
    child = spawn("-m", "graph.review", "--db", str(db), "--task", "reverse", "--batch", "--expert", "lin")
    try:
        child.expect(r"task reverse")
        child.expect(r"thread r1")
        child.expect(PROMPT)
        child.sendline("accept 1")
        child.expect(r"thread r1: done")
        child.expect(r"thread r2")
        child.expect(PROMPT)
        child.sendline("note Read the row from right to left.")
        child.expect(r"thread r2: done")  # predicted again by the run's own model (hf:tiny)
        child.expect(r"2 answered.*0 skipped")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert final_state(db, "r1")["expert"] == {"action": "accept", "candidate": 1, "expert": "lin"}
    r2 = final_state(db, "r2")
    assert r2["expert"]["expert"] == "lin" and r2["attempts"][-1]["strategy"] == "expert"
    assert "Read the row from right to left." in task_notes(open_store(db), reverse_task().key)
    assert [r.thread for r in Reviewer(db).waiting()] == ["o1"]  # another task's run is not in the batch


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "reverse.json"
    path.write_text(reverse_task().model_dump_json())
    return path


def test_run_no_wait_leaves_the_run_waiting_and_prints_the_review_command(task_file, tiny_checkpoint, db):
    proc = run_cli(
        "--task", str(task_file), "--model", f"hf:{tiny_checkpoint}", "--strategy", "expert",
        "--samples", "1", "--limit", "1", "--no-wait", "--json", "--db", str(db), "--thread", "demo",
        env={"COLUMNS": "60"},  # narrow: the command must still come out on one line
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert result["status"] == "waiting" and result["thread_id"] == "demo"
    assert result["review"]["kind"] == "expert_review" and result["review"]["query"] == [[7, 0, 8, 9]]
    command = f"python -m graph.review --db {shlex.quote(str(db))} --thread demo"
    assert "(thread demo)" in proc.stderr and command in proc.stderr
    # The printed command is the one to run: it finds the run and resumes it with the run's model.
    child = spawn(*shlex.split(command)[1:], "--expert", "ada")
    try:
        child.expect(r"thread demo")
        child.expect(PROMPT)
        child.sendline("answer [[9, 8, 0, 7]]")
        child.expect(r"thread demo: done")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert final_state(db, "demo")["expert"]["expert"] == "ada"


def test_run_asks_inline_at_a_terminal_and_resumes(task_file, tiny_checkpoint, db):
    child = spawn(
        "-m", "graph.run", "--task", str(task_file), "--model", f"hf:{tiny_checkpoint}", "--strategy",
        "expert", "--samples", "1", "--limit", "1", "--db", str(db), "--thread", "inline",
        "--expert", "grace",
    )  # fmt: skip
    try:
        child.expect(r"waiting for an expert")
        child.expect(r"thread inline")
        child.expect(PROMPT)
        child.sendline("answer [[9, 8, 0, 7]]")
        child.expect(r"thread inline: done")
        child.expect(r"Summary")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    state = final_state(db, "inline")
    assert state["expert"] == {"action": "answer", "answer": [[9, 8, 0, 7]], "expert": "grace"}
    assert state["correct"] is True
