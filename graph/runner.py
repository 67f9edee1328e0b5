"""Running queries through a compiled graph: events in, one validated result out.

Shared by ``graph.run`` (live trace), ``graph.bench`` (no trace) and tests. A run is keyed by
its thread id: when a checkpointer is attached and the thread already has state, the run
resumes where it stopped (or returns the finished result) instead of starting again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field

from graph.context import Context
from tasks.schema import Task

#: Called with each trace event: ``{"node", "message", ...}`` (and ``"kind"``: update/progress).
EventSink = Callable[[dict[str, Any]], None]


class QueryResult(BaseModel):
    """The result of one query, as the CLI prints it and ``--json`` writes it."""

    task_id: str
    task_type: str | None = None
    query_index: int
    thread_id: str | None = None
    answer: Any = None
    target: Any = None
    correct: bool | None = None
    confidence: float = 0.0
    strategy: str = ""
    reason: str = ""
    seconds: float = Field(0.0, description="Wall time of the graph nodes for this query.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    resumed: str = Field("", description="'' for a fresh run, 'resumed' or 'finished earlier'.")

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def run_query(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    task: Task,
    query_index: int,
    *,
    context: Context,
    query_input: Any = None,
    target: Any = None,
    thread_id: str | None = None,
    on_event: EventSink | None = None,
) -> QueryResult:
    """Answer one query of ``task`` (``task.test[query_index]`` unless ``query_input`` is given).

    Args:
        graph: A compiled Mockingbird graph (with a checkpointer if ``thread_id`` is given).
        task: The task.
        query_index: Which test query (also used in the result when ``query_input`` is given).
        context: The run's knobs.
        query_input: An explicit query input, overriding the task's test query.
        target: The target for an explicit query (optional).
        thread_id: Checkpoint thread; resumes an unfinished run of the same thread.
        on_event: Receives trace events as nodes run.
    """
    if query_input is None:
        q = task.test[query_index]
        query_input, target = q.input, q.target
    config = RunnableConfig(configurable={"thread_id": thread_id}) if thread_id else RunnableConfig()
    payload: Any = {"task": task.model_dump(mode="json"), "query": {"input": query_input, "target": target}}
    resumed = ""
    if thread_id and graph.checkpointer is not None:
        snapshot = graph.get_state(config)
        if snapshot.next:
            payload, resumed = None, "resumed"  # None input = continue from the last checkpoint
        elif snapshot.values.get("strategy") and "correct" in snapshot.values:
            resumed = "finished earlier"
    emit = on_event or (lambda _e: None)
    final: dict[str, Any] = {}
    if resumed == "finished earlier":
        final = dict(graph.get_state(config).values)
        emit({"kind": "update", "node": "checkpoint", "message": f"thread {thread_id} finished earlier"})
    else:
        if resumed:
            emit({"kind": "update", "node": "checkpoint", "message": f"resuming thread {thread_id}"})
        modes: list[Any] = ["updates", "custom", "values"]
        for part in graph.stream(payload, config, context=context, stream_mode=modes, version="v2"):
            if part["ns"]:
                continue  # events of a parent/child graph are theirs to show
            if part["type"] == "custom":
                emit({"kind": "progress", **part["data"]})
            elif part["type"] == "updates":
                for node, update in (part["data"] or {}).items():
                    spent = sum(c["seconds"] for c in (update or {}).get("costs", []))
                    for event in (update or {}).get("trace", []):
                        emit({"kind": "update", "seconds": spent, **event, "node": event.get("node", node)})
            elif part["type"] == "values":
                final = part["data"]
    costs = final.get("costs", [])
    return QueryResult(
        task_id=task.id,
        task_type=task.type,
        query_index=query_index,
        thread_id=thread_id,
        answer=final.get("answer"),
        target=target,
        correct=final.get("correct"),
        confidence=final.get("confidence", 0.0),
        strategy=final.get("strategy", ""),
        reason=final.get("reason", ""),
        seconds=round(sum(c["seconds"] for c in costs), 4),
        prompt_tokens=sum(c["prompt_tokens"] for c in costs),
        completion_tokens=sum(c["completion_tokens"] for c in costs),
        requests=sum(c["requests"] for c in costs),
        candidates=list(final.get("candidates", [])),
        resumed=resumed,
    )
