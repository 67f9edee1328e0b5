"""Mockingbird as a sub-agent: explicit key mapping, a LangChain tool, interrupts in the parent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from graph.builder import build_graph
from graph.context import Context
from graph.errors import InvalidInputError
from graph.tool import as_node, as_tool
from tests.graph.conftest import ScriptedBackend

ROOT = Path(__file__).resolve().parents[2]


class Puzzle(TypedDict, total=False):
    problem: dict[str, Any]
    x: Any
    solution: Any
    sure: float


def _parent(child: Any, context: Context) -> Any:
    p = StateGraph(Puzzle)
    p.add_node("solve", as_node(child, task="problem", query="x", outputs={"answer": "solution",
                                                                          "confidence": "sure"},
                                context=context))  # fmt: skip
    p.add_edge(START, "solve")
    p.add_edge("solve", END)
    return p.compile(checkpointer=InMemorySaver())


def test_as_node_maps_the_parents_keys(task):
    app = _parent(build_graph(model=ScriptedBackend(["9807\n"])), Context(strategy="icl", samples=1))
    out = app.invoke({"problem": task.model_dump(mode="json"), "x": [[7, 0, 8, 9]]},
                     {"configurable": {"thread_id": "a"}}, version="v2").value  # fmt: skip
    assert out["solution"] == [[9, 8, 0, 7]] and out["sure"] > 0


def test_an_expert_pause_in_the_child_surfaces_in_the_parent_and_resumes_there(task):
    app = _parent(build_graph(model=ScriptedBackend(["0000\n"])), Context(strategy="expert", samples=1))
    cfg = {"configurable": {"thread_id": "b"}}
    paused = app.invoke({"problem": task.model_dump(mode="json"), "x": [[7, 0, 8, 9]]}, cfg, version="v2")
    assert paused.interrupts and paused.interrupts[0].value["kind"] == "expert_review"
    assert "solution" not in paused.value
    reply = {"action": "answer", "answer": [[9, 8, 0, 7]], "expert": "ada"}
    done = app.invoke(Command(resume=reply), cfg, version="v2")
    assert not done.interrupts and done.value["solution"] == [[9, 8, 0, 7]] and done.value["sure"] == 1.0


def test_a_missing_parent_key_is_one_line(task):
    app = _parent(build_graph(model=ScriptedBackend(["9807\n"])), Context(strategy="icl", samples=1))
    with pytest.raises(InvalidInputError, match="parent state: x: missing"):
        app.invoke({"problem": task.model_dump(mode="json")}, {"configurable": {"thread_id": "c"}})


def test_as_tool_answers_in_one_call(task, tmp_path):
    tool = as_tool(build_graph(model=ScriptedBackend(["9807\n"])), context=Context(strategy="icl", samples=1))
    assert tool.name == "mockingbird" and set(tool.args) == {"task", "query"}
    out = json.loads(tool.invoke({"task": task.model_dump(mode="json"), "query": [[7, 0, 8, 9]]}))
    assert out["answer"] == [[9, 8, 0, 7]] and out["strategy"] == "icl"
    assert out["confidence"] == 0.9048  # one greedy sample: its probability, exp(-0.1)
    with pytest.raises(InvalidInputError, match=r"^task\.kind: Field required$"):  # the field, one line
        tool.invoke({"task": {"id": "x"}, "query": [[1]]})


def test_as_tool_reads_files_only_under_the_callers_root(task, tmp_path):
    root, outside = tmp_path / "tasks", tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    (root / "t.json").write_text(task.model_dump_json())
    (outside / "secret.json").write_text(task.model_dump_json())
    (root / "link.json").symlink_to(outside / "secret.json")
    graph = build_graph(model=ScriptedBackend(["9807\n"]))
    ctx = Context(strategy="icl", samples=1)
    query = [[7, 0, 8, 9]]
    no_files = as_tool(graph, context=ctx)  # the default: task objects only
    with pytest.raises(InvalidInputError, match="this tool reads no files"):
        no_files.invoke({"task": str(root / "t.json"), "query": query})
    tool = as_tool(graph, context=ctx, task_root=root)
    assert json.loads(tool.invoke({"task": "t.json", "query": query}))["answer"] == [[9, 8, 0, 7]]
    assert json.loads(tool.invoke({"task": str(root / "t.json"), "query": query}))["answer"] == [[9, 8, 0, 7]]
    for sneaky in (str(outside / "secret.json"), "../private/secret.json", "link.json", "/etc/passwd"):
        with pytest.raises(InvalidInputError, match="outside the tool's task folder"):
            tool.invoke({"task": sneaky, "query": query})


def test_the_tool_in_a_tool_calling_agent_with_an_expert_pause(task):
    from langgraph.prebuilt import ToolNode

    from examples.parent_agent import TASK_FILE, build_parent

    app = build_parent(ScriptedBackend(["0000000000\n"]), expert=True)
    cfg = {"configurable": {"thread_id": "agent"}}
    paused = app.invoke({"messages": [("user", "solve")]}, cfg, version="v2")
    assert paused.interrupts[0].value["task_id"] == "reverse"
    answer = json.loads(TASK_FILE.read_text())["test"][0]["target"]
    done = app.invoke(
        Command(resume={"action": "answer", "answer": answer, "expert": "ada"}), cfg, version="v2"
    )
    last = done.value["messages"][-1]
    assert isinstance(last, AIMessage) and "expert, confidence 1.00" in str(last.content)
    assert isinstance(app.nodes["tools"].bound, ToolNode)  # the example's tool node is LangGraph's own


def test_the_example_runs(tmp_path):
    cmd = [sys.executable, "examples/parent_agent.py"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("Mockingbird (icl, confidence")
