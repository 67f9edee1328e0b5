"""Running queries through a compiled graph: events in, one validated result out.

Shared by ``graph.run`` (live trace), ``graph.bench`` (no trace) and tests. A run is keyed by
its thread id: when a checkpointer is attached and the thread already has state, the run
resumes where it stopped (or returns the finished result) instead of starting again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from pydantic import BaseModel, Field

from graph.context import Context
from graph.errors import DamagedStateError, InvalidInputError
from graph.memory import finished_run, record_run, run_of
from tasks.schema import Task

#: Called with each trace event: ``{"node", "message", ...}`` (and ``"kind"``: update/progress).
EventSink = Callable[[dict[str, Any]], None]

#: LangGraph's checkpoint durability modes (``run_query(durability=...)``).
DURABILITIES = ("sync", "async", "exit")


def run_record(graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str) -> dict[str, Any] | None:
    """What :func:`run_query` recorded when it started ``thread_id`` (``None`` if unknown)."""
    return run_of(graph.store, thread_id)


def context_from_record(record: dict[str, Any] | None, **override: Any) -> Context:
    """The :class:`Context` a run was started with (unknown fields dropped), with ``override``.

    Stored values are explicit, so they win over this process's environment.
    """
    stored = {k: v for k, v in ((record or {}).get("context") or {}).items() if k in Context.model_fields}
    return Context(**(stored | {k: v for k, v in override.items() if v is not None}))


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
    status: str = Field("done", description="'done', or 'waiting' for an expert (see ``review``).")
    review: dict[str, Any] | None = Field(None, description="What the expert is asked, when waiting.")
    attempts: list[dict[str, Any]] = Field(default_factory=list, description="Strategies tried, in order.")
    decisions: list[dict[str, Any]] = Field(
        default_factory=list, description="The router's decisions (strategy, reason), in order."
    )
    expert: dict[str, Any] | None = Field(None, description="The expert's reply, when a person answered.")

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def check_thread_owner(thread_id: str, values: dict[str, Any], task: Task, query_input: Any) -> None:
    """A thread belongs to one task and one query: refuse to answer another one on it.

    Raises:
        InvalidInputError: ``values`` (the thread's checkpointed state) hold another task or query.
    """
    if not values or "task" not in values or "query" not in values:
        return  # a new thread
    from graph.memory import query_key

    theirs = values["task"]
    if theirs.get("id") != task.id or query_key(values["query"].get("input")) != query_key(query_input):
        what = "task" if theirs.get("id") != task.id else "query"
        raise InvalidInputError(
            f"--thread {thread_id}: belongs to task {theirs.get('id')} and another {what}; "
            "give a new --thread (or none) for this query"
        )


class ThreadBusyError(InvalidInputError):
    """Another process is running or resuming the thread now (one line; the run is untouched)."""


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
    resume: Any = None,
    durability: str | None = None,
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
        resume: An expert's reply to a run of ``thread_id`` that waits for review
            (``Command(resume=...)``); validate it first with :func:`nodes.expert.parse_reply`.
        durability: When checkpoints are written: ``"sync"`` (before the next step starts),
            ``"async"`` (while it runs; LangGraph's default) or ``"exit"`` (when the run stops);
            ``None`` keeps LangGraph's default. Checked here: LangGraph accepts a misspelt value.

    Raises:
        InvalidInputError: An unknown ``durability``, or a ``resume`` the thread cannot take.
        ThreadBusyError: Another process runs or resumes ``thread_id`` now (SQLite checkpointer:
            a thread runs in one process at a time, see :class:`graph.storage.ThreadLeases`).
    """
    from graph.storage import ThreadBusy, ThreadLeases

    if durability is not None and durability not in DURABILITIES:
        raise InvalidInputError(f"durability: expected one of {', '.join(DURABILITIES)}, got {durability!r}")
    job = QueryJob(
        graph, task, query_index, context, query_input, target, thread_id, on_event, resume, durability
    )
    leases = ThreadLeases.for_saver(graph.checkpointer) if thread_id else None
    if leases is None or thread_id is None:
        return _run_query(job)
    try:
        with leases.hold(thread_id):  # only taking the lease raises ThreadBusy
            return _run_query(job)
    except ThreadBusy as exc:
        raise ThreadBusyError(str(exc)) from None


@dataclass(frozen=True)
class QueryJob:
    """One call of :func:`run_query`, its arguments as they were given."""

    graph: CompiledStateGraph[Any, Any, Any, Any]
    task: Task
    query_index: int
    context: Context
    query_input: Any
    target: Any
    thread_id: str | None
    on_event: EventSink | None
    resume: Any
    durability: str | None


def _run_query(job: QueryJob) -> QueryResult:
    graph, task, query_index, context = job.graph, job.task, job.query_index, job.context
    query_input, target, thread_id = job.query_input, job.target, job.thread_id
    on_event, resume, durability = job.on_event, job.resume, job.durability
    if query_input is None:
        q = task.test[query_index]
        query_input, target = q.input, q.target
    config = RunnableConfig(configurable={"thread_id": thread_id}) if thread_id else RunnableConfig()
    payload: Any = {"task": task.model_dump(mode="json"), "query": {"input": query_input, "target": target}}
    resumed = ""
    waiting = False
    recorded: dict[str, Any] | None = None
    if thread_id and graph.checkpointer is not None:
        snapshot = graph.get_state(config)
        check_thread_owner(thread_id, snapshot.values, task, query_input)
        waiting = bool(snapshot.interrupts)
        if resume is not None:
            if not waiting:
                raise InvalidInputError(f"thread {thread_id}: not waiting for an expert")
            from graph.expert_reply import parse_reply

            parse_reply(resume, snapshot.interrupts[0].value)
        if snapshot.next or snapshot.tasks:
            # None input = continue from the last checkpoint; a reply answers a pending review.
            # `tasks` without `next`: every task of the last checkpoint finished and its writes
            # were saved, but the process died before the next checkpoint; continuing applies
            # them (a fresh input would restart the run on top of its own state).
            payload, resumed = (None if resume is None else Command(resume=resume)), "resumed"
        elif snapshot.values.get("strategy") and "correct" in snapshot.values:
            resumed = "finished earlier"
        elif (done := finished_run(graph.store, thread_id)) is not None:
            # finalize recorded the run, but its last checkpoint was lost (a kill with
            # durability="exit"): running it again would answer with its own outcome as evidence
            recorded, resumed = done, "finished earlier"
        elif graph.store is not None:
            record_run(graph.store, thread_id, task, query_index, context.model_dump(mode="json"))
    elif resume is not None:
        raise InvalidInputError("resume: needs the thread id of a checkpointed run")
    emit = on_event or (lambda _e: None)
    final: dict[str, Any] = {}
    if recorded is not None:
        final = recorded
        emit({"kind": "update", "node": "checkpoint", "message": f"thread {thread_id} finished earlier"})
    elif resumed == "finished earlier":
        final = dict(graph.get_state(config).values)
        emit({"kind": "update", "node": "checkpoint", "message": f"thread {thread_id} finished earlier"})
    else:
        if resumed:
            emit({"kind": "update", "node": "checkpoint", "message": f"resuming thread {thread_id}"})
        modes: list[Any] = ["updates", "custom", "values"]
        # Without a checkpointer there is nothing to make durable ("sync" would crash: NOTES).
        durable = durability and graph.checkpointer is not None
        extra: dict[str, Any] = {"durability": durability} if durable else {}
        for part in graph.stream(payload, config, context=context, stream_mode=modes, version="v2", **extra):
            if part["ns"]:
                continue  # events of a parent/child graph are theirs to show
            if part["type"] == "custom":
                emit({"kind": "progress", **part["data"]})
            elif part["type"] == "updates":
                for node, update in (part["data"] or {}).items():
                    if node == "__interrupt__":  # a pause for review: shown from the snapshot below
                        emit({"kind": "update", "node": "expert", "message": "waiting for an expert"})
                        continue
                    spent = sum(c["seconds"] for c in (update or {}).get("costs", []))
                    for event in (update or {}).get("trace", []):
                        emit({"kind": "update", "seconds": spent, **event, "node": event.get("node", node)})
            elif part["type"] == "values":
                final = part["data"]
    try:
        costs = final.get("costs", [])
        review = None
        if thread_id and graph.checkpointer is not None:
            pending = graph.get_state(config).interrupts
            review = dict(pending[0].value) if pending else None
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
            status="waiting" if review else "done",
            review=review,
            attempts=list(final.get("attempts", [])),
            decisions=[
                {"strategy": d["strategy"], "reason": d["reason"]} for d in final.get("decisions", [])
            ],
            expert=final.get("expert"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if not resumed:
            raise  # a fresh run's state is the graph's own: a failure here is a bug, not damage
        raise DamagedStateError(
            f"thread {thread_id}: its saved state cannot be read back "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); answer the query on a new --thread"
        ) from None
