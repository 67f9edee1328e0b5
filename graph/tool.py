"""Mockingbird as a sub-agent: a node with explicit key mapping, or a LangChain tool.

Three ways to embed the compiled graph (``graph.builder.build_graph``) in another agent:

1. **As a node, same keys**: ``parent.add_node("mockingbird", build_graph(...))`` when the
   parent's state has ``task``/``query``/``answer``/... (see ``tests/graph/test_embedding.py``).
2. **As a node, the parent's own keys**: :func:`as_node` maps them explicitly::

       parent.add_node("solve", as_node(child, task="problem", query="x", outputs={"answer": "solution"}))

3. **As a tool** for a tool-calling agent: :func:`as_tool` (one call: task + query -> answer,
   confidence, strategy, reason). The task is an object; files are read only under a
   ``task_root`` the caller names.

In every case the child runs *inside* the parent's run (it is invoked with the parent's config),
so when it pauses for a human expert the interrupt surfaces in the parent's result
(``parent.invoke(..., version="v2").interrupts``), the parent's checkpointer keeps it, and the
parent resumes it with ``parent.invoke(Command(resume=reply), config)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import StructuredTool
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field, ValidationError

from graph.context import Context
from graph.errors import InvalidInputError
from tasks.errors import error_line

#: Child output keys a parent usually wants.
RESULT_KEYS = ("answer", "confidence", "strategy", "reason", "correct")


def as_node(
    child: CompiledStateGraph[Any, Any, Any, Any],
    *,
    task: str = "task",
    query: str = "query",
    outputs: dict[str, str] | None = None,
    context: Context | None = None,
) -> Callable[[dict[str, Any], RunnableConfig], dict[str, Any]]:
    """A parent-graph node that runs ``child`` with the parent's keys mapped explicitly.

    Args:
        child: The compiled Mockingbird graph.
        task: Parent key holding the task (a ``Task.model_dump()`` dict).
        query: Parent key holding the query *input* (the value to predict an output for).
        outputs: Child output key -> parent key (default: ``answer`` -> ``answer``).
        context: The child's run knobs (the parent's context schema is its own).
    """
    mapping = outputs or {"answer": "answer"}

    def mockingbird(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        if task not in state or query not in state:
            missing = task if task not in state else query
            raise InvalidInputError(f"parent state: {missing}: missing (mapped to the sub-agent's input)")
        out = child.invoke(
            {"task": state[task], "query": {"input": state[query]}},
            config,  # the parent's config: the child runs as its sub-graph (interrupts surface)
            context=context or Context(),
            version="v2",
        ).value
        return {parent_key: out.get(child_key) for child_key, parent_key in mapping.items()}

    return mockingbird


class ToolInput(BaseModel):
    """What a tool-calling model passes to the Mockingbird tool."""

    task: dict[str, Any] | str = Field(
        description="The task: the project's task JSON object (function, train examples), or the path "
        "of a task file under the folder the tool was given (if any)."
    )
    query: Any = Field(description="The input to predict an output for (a grid, list, text or feature map).")


def _load_task(raw: dict[str, Any] | str, task_root: Path | None) -> dict[str, Any]:
    """The task a model passed: a task object, or a file under ``task_root`` (never elsewhere).

    A tool-calling model chooses its arguments, so a path is untrusted: without ``task_root`` no path
    is read at all, and with it only files that resolve (symbolic links followed) inside it.
    """
    from tasks.loaders import load_any
    from tasks.schema import Task

    if isinstance(raw, str):
        if task_root is None:
            raise InvalidInputError("task: pass the task object; this tool reads no files")
        root = task_root.resolve()
        path = (root / raw).resolve()  # a relative path is taken under the root
        if not path.is_relative_to(root):
            raise InvalidInputError(f"task: {raw} is outside the tool's task folder")
        if not path.is_file():
            raise InvalidInputError(f"task: {raw} is not a task file in the tool's task folder")
        tasks = load_any(path)
        if len(tasks) != 1:
            raise InvalidInputError(f"task: {raw} holds {len(tasks)} tasks; the tool answers one")
        return tasks[0].model_dump(mode="json")
    try:
        return Task.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidInputError(error_line(exc, "task")) from None


def as_tool(
    child: CompiledStateGraph[Any, Any, Any, Any],
    *,
    context: Context | None = None,
    task_root: str | Path | None = None,
    name: str = "mockingbird",
    description: str = (
        "Predict the output of a function from a few input/output examples (role-play the function); "
        "returns the answer, its confidence (0-1) and the strategy that produced it."
    ),
) -> StructuredTool:
    """A LangChain tool: one call, task + query -> ``{answer, confidence, strategy, reason}``.

    The model passes the task as an object; a file path is read only when the caller names a
    ``task_root`` folder, and only for files inside it (a model's arguments are untrusted input:
    it must not pull arbitrary local files into prompts).

    The tool runs the child inside the calling graph's run (the tool's ``config``), so an expert
    review the child asks for pauses the *caller*, which resumes it with ``Command(resume=...)``.
    """

    root = Path(task_root) if task_root is not None else None
    if root is not None and not root.is_dir():
        raise InvalidInputError(f"task_root: {root} is not a folder")

    def call(task: dict[str, Any] | str, query: Any, config: RunnableConfig) -> str:
        out = child.invoke(
            {"task": _load_task(task, root), "query": {"input": query}},
            config,
            context=context or Context(),
            version="v2",
        ).value
        return json.dumps({k: out.get(k) for k in RESULT_KEYS if k in out})

    return StructuredTool.from_function(
        func=call, name=name, description=description, args_schema=ToolInput, response_format="content"
    )
