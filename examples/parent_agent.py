"""A parent agent that uses Mockingbird as a tool, and lets a person answer when it is unsure.

Run it (the embedded model, no API key)::

    python examples/parent_agent.py

The parent is a small tool-calling agent: its "planner" node decides to call the ``mockingbird``
tool for a puzzle (a real agent would use a chat model here; this one is scripted so the example
runs offline), a ``ToolNode`` runs the tool, and a ``report`` node reads the tool's answer. With
``--expert`` the sub-agent pauses for a human expert; the pause surfaces in the *parent*, which
is resumed with the expert's answer, as a review session would.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from typing_extensions import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from graph.builder import build_graph
from graph.context import Context
from graph.tool import as_tool
from models.base import ModelBackend
from tasks.loaders import load_any

TASK_FILE = Path(__file__).resolve().parents[1] / "tasks" / "examples" / "reverse.json"


class AgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]  # appended: the conversation so far


def build_parent(model: ModelBackend | None = None, *, expert: bool = False) -> Any:
    """The parent agent: planner -> tools (Mockingbird) -> report; with a checkpointer for pauses."""
    child = build_graph(model=model)
    # The tool reads task files only under the folder named here (a model's arguments are untrusted).
    tool = as_tool(
        child, context=Context(strategy="expert" if expert else "icl", samples=1), task_root=TASK_FILE.parent
    )
    task = load_any(TASK_FILE)[0]

    def planner(state: AgentState) -> dict[str, Any]:
        # A real agent asks a chat model which tool to call; this one always asks Mockingbird.
        call = {"name": "mockingbird", "args": {"task": TASK_FILE.name, "query": task.test[0].input},
                "id": "call-1", "type": "tool_call"}  # fmt: skip
        return {"messages": [AIMessage(content="", tool_calls=[call])]}

    def report(state: AgentState) -> dict[str, Any]:
        result = json.loads(str(state["messages"][-1].content))
        text = (
            f"Mockingbird ({result['strategy']}, confidence {result['confidence']:.2f}): {result['answer']}"
        )
        return {"messages": [AIMessage(content=text)]}

    parent = StateGraph(AgentState)
    parent.add_node("planner", planner)
    parent.add_node("tools", ToolNode([tool]))
    parent.add_node("report", report)
    parent.add_edge(START, "planner")
    parent.add_edge("planner", "tools")
    parent.add_edge("tools", "report")
    parent.add_edge("report", END)
    return parent.compile(checkpointer=InMemorySaver(), name="parent-agent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expert", action="store_true", help="the sub-agent asks a person; answer on stdin")
    args = parser.parse_args(argv)
    app = build_parent(expert=args.expert)
    config = {"configurable": {"thread_id": "example"}}
    out = app.invoke({"messages": [HumanMessage(content="Solve the puzzle.")]}, config, version="v2")
    while out.interrupts:  # the sub-agent waits for a person: the parent shows what it was asked
        review = out.interrupts[0].value
        print(f"expert review for task {review['task_id']}: query {review['query']}")
        print("candidates:", [c["answer"] for c in review["candidates"]])
        answer = json.loads(input("correct output as JSON: "))
        out = app.invoke(Command(resume={"action": "answer", "answer": answer, "expert": "example"}),
                         config, version="v2")  # fmt: skip
    messages = out.value["messages"]
    assert isinstance(messages[-2], ToolMessage)
    print(messages[-1].content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
