"""The expert node: pause, resume with each kind of reply, and what the reply leaves behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from graph.builder import build_graph
from graph.context import Context
from graph.errors import InvalidInputError
from graph.expert_reply import parse_reply
from graph.memory import task_examples, task_notes
from graph.runner import run_query
from graph.storage import open_checkpointer, open_store
from tests.graph.conftest import ScriptedBackend, reverse_task
from tests.nodes.conftest import ScriptedChat

EXPERT = Context(strategy="expert", samples=1)


def _graph(db, script=("0000\n",)):
    model = ScriptedBackend(list(script))
    return build_graph(model=model, checkpointer=open_checkpointer(db), store=open_store(db)), model


def test_the_run_waits_with_everything_a_reviewer_needs(tmp_path):
    g, _ = _graph(tmp_path / "db")
    waiting = run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t")
    assert waiting.status == "waiting" and waiting.correct is None
    review = waiting.review
    assert review["kind"] == "expert_review" and review["task_id"] == "reverse"
    assert review["query"] == [[7, 0, 8, 9]] and len(review["demos"]) == 3
    assert review["candidates"] == [{"answer": [[0, 0, 0, 0]], "votes": 1, "share": 1.0}]
    assert any("ICL first" in r for r in review["reasons"])


def test_accept_a_candidate(tmp_path):
    g, _ = _graph(tmp_path / "db", ["9807\n"])
    run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t")
    done = run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t",
                     resume={"action": "accept", "candidate": 0, "expert": "ada"})  # fmt: skip
    assert done.status == "done" and done.correct is True and done.strategy == "expert"
    assert done.expert == {"action": "accept", "candidate": 0, "expert": "ada"} and done.confidence == 1.0


def test_an_answer_becomes_a_labelled_example_in_the_next_prompt(tmp_path):
    db = tmp_path / "db"
    g, _ = _graph(db)
    run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t")
    done = run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t",
                     resume={"action": "answer", "answer": [[9, 8, 0, 7]], "expert": "ada"})  # fmt: skip
    assert done.answer == [[9, 8, 0, 7]] and done.correct is True
    assert task_examples(open_store(db), reverse_task().key) == [
        {"input": [[7, 0, 8, 9]], "output": [[9, 8, 0, 7]]}
    ]
    g2, model = _graph(db)
    run_query(g2, reverse_task(), 1, context=Context(strategy="icl", samples=1), thread_id="next")
    assert "I7089O9807" in (model.prompts[-1].text or "")  # the expert's example is a demonstration


def test_a_note_is_kept_and_the_query_predicted_again_with_it(tmp_path):
    db = tmp_path / "db"
    g, model = _graph(db, ["9807\n"])
    run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t")
    calls = len(model.calls)
    note = {"action": "note", "note": "Read the row right to left.", "expert": "ada"}
    done = run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t", resume=note)
    assert done.status == "done" and len(model.calls) == calls + 1  # predicted once more
    assert "Read the row right to left." in task_notes(open_store(db), reverse_task().key)
    assert done.strategy == "expert" and done.answer == [[9, 8, 0, 7]]


def test_a_note_is_in_the_new_prompt_and_in_every_later_prompt_of_the_task(tmp_path):
    db = tmp_path / "db"
    chat = ScriptedChat(["[[0, 0, 0, 0]]"])
    g = build_graph(model=chat, checkpointer=open_checkpointer(db), store=open_store(db))
    run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t")
    assert "Read the row right to left." not in str(chat.prompts[-1].messages)
    note = {"action": "note", "note": "Read the row right to left.", "expert": "ada"}
    run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t", resume=note)
    assert "Read the row right to left." in str(chat.prompts[-1].messages)  # the re-prediction
    later = ScriptedChat(["[[4, 3, 2, 1]]"])
    g2 = build_graph(model=later, checkpointer=open_checkpointer(db), store=open_store(db))
    run_query(g2, reverse_task(), 1, context=Context(strategy="icl", samples=1), thread_id="later")
    assert "Read the row right to left." in str(later.prompts[0].messages)  # a later query of the task


def test_a_bad_reply_never_reaches_the_run_which_keeps_waiting(tmp_path):
    g, _ = _graph(tmp_path / "db")
    run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t")
    with pytest.raises(InvalidInputError, match=r"candidate: must be 0\.\.0 for accept, got 4"):
        run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t",
                  resume={"action": "accept", "candidate": 4})  # fmt: skip
    again = run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t")  # no reply: still waiting
    assert again.status == "waiting" and again.resumed == "resumed"
    done = run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t",
                     resume={"action": "answer", "answer": [[9, 8, 0, 7]]})  # fmt: skip
    assert done.correct is True and done.expert == {"action": "answer", "answer": [[9, 8, 0, 7]],
                                                     "expert": "anonymous"}  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"^thread t: not waiting for an expert$"):
        run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t", resume={"action": "accept"})


def test_the_result_mirrors_attempts_decisions_and_the_expert(tmp_path):
    g, _ = _graph(tmp_path / "db", ["9807\n"])
    run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t")
    done = run_query(g, reverse_task(), 0, context=EXPERT, thread_id="t",
                     resume={"action": "accept", "candidate": 0, "expert": "ada"})  # fmt: skip
    assert [a["strategy"] for a in done.attempts] == ["icl", "expert"]
    assert done.attempts[-1]["confidence"] == 1.0 and done.attempts[-1]["answer"] == [[9, 8, 0, 7]]
    assert [d["strategy"] for d in done.decisions] == ["icl", "expert"]  # then finalize
    assert done.model_dump(mode="json")["expert"]["expert"] == "ada"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"action": "maybe"}, "expert reply: action: must be accept, answer or note"),
        ({"action": "accept", "candidate": 3}, "expert reply: candidate: must be 0..0 for accept, got 3"),
        ({"action": "answer", "answer": [[1, 12]]}, "expert reply: answer: cell [0][1] is 12"),
        ({"action": "note", "note": "  "}, "expert reply: note: must not be empty"),
        ({"action": "answer"}, "expert reply: answer: missing"),
        ({"action": "note", "note": "x", "tip": 1}, "expert reply: tip: unknown field"),
    ],
)
def test_a_bad_reply_is_one_line(reply, message):
    payload = {"task_kind": "grid", "candidates": [{"answer": [[1]], "votes": 1}]}
    with pytest.raises(InvalidInputError) as err:
        parse_reply(reply, payload)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_run_killed_while_waiting_resumes_in_another_process(tmp_path):
    db = tmp_path / "db"
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from graph.builder import build_graph
        from graph.context import Context
        from graph.runner import run_query
        from graph.storage import open_checkpointer, open_store
        from tests.graph.conftest import ScriptedBackend, reverse_task
        g = build_graph(model=ScriptedBackend(["0000\\n"]), checkpointer=open_checkpointer(Path({str(db)!r})),
                        store=open_store(Path({str(db)!r})))
        reply = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None
        r = run_query(g, reverse_task(), 0, context=Context(strategy="expert", samples=1), thread_id="k",
                      resume=reply)
        print(json.dumps({{"status": r.status, "correct": r.correct}}))
    """)
    root = Path(__file__).resolve().parents[2]
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root)
    assert first.returncode == 0, first.stderr[-2000:]
    assert '"status": "waiting"' in first.stdout  # the process exits while the run waits
    reply = '{"action": "answer", "answer": [[9, 8, 0, 7]], "expert": "ada"}'
    second = subprocess.run([sys.executable, "-c", script, reply], capture_output=True, text=True, cwd=root)
    assert second.returncode == 0, second.stderr[-2000:]
    assert '"status": "done", "correct": true' in second.stdout
