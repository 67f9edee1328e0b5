"""Review sessions' service: find the runs that wait for an expert and resume them with replies.

The terminal session (``python -m graph.review``), the web page (:mod:`graph.review_web`) and the
chaos suite all go through :class:`Reviewer`. Resuming needs the graph and the run's knobs: the
graph is rebuilt (same nodes, same database), and the run's :class:`~graph.context.Context` comes
from the record ``run_query`` kept in the store when the run started (LangGraph does not persist
the runtime context).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from graph.errors import InvalidInputError

if TYPE_CHECKING:
    from graph.runner import QueryResult
    from graph.storage import Database
    from models.base import ModelBackend

log = logging.getLogger(__name__)

#: The channel LangGraph writes a node's pending interrupt to (``langgraph._internal._constants``).
INTERRUPT_CHANNEL = "__interrupt__"


class WaitingRun(BaseModel):
    """A run that waits for an expert: where it is and what the expert is asked."""

    thread: str
    task_id: str
    task_kind: str
    query: Any
    query_index: int = 0
    since: str
    """When the run paused (ISO time of its latest checkpoint)."""
    review: dict[str, Any]
    """The interrupt payload (see :func:`nodes.expert.review_payload`)."""

    @property
    def age_s(self) -> float:
        return (datetime.now(UTC) - datetime.fromisoformat(self.since)).total_seconds()


class Reviewer:
    """Finds the runs waiting in one database and resumes them with experts' replies.

    Args:
        db: The database ``graph.run`` used (checkpoints and task memory): a SQLite path or a
            ``postgresql://`` URL (a review session in one process resumes runs started in others).
        model: A backend to bind (tests); else the run's own model spec is loaded when needed.
        model_spec: Overrides the model spec recorded with each run (``--model``).
    """

    def __init__(
        self, db: str | Path | Database, *, model: ModelBackend | None = None, model_spec: str | None = None
    ) -> None:
        from graph.builder import build_graph
        from graph.storage import open_checkpointer, open_store, parse_db

        self.db = parse_db(db)
        self.model_spec = model_spec
        self.checkpointer = open_checkpointer(self.db)
        self.graph = build_graph(model=model, checkpointer=self.checkpointer, store=open_store(self.db))
        # One resume at a time: the web page serves requests in threads on shared connections.
        self.lock = threading.Lock()

    def _candidate_threads(self) -> list[str]:
        """Threads that have ever paused at the top level; ``get_state`` then says if still.

        A narrow query of our own on the saver's writes table (fixed SQL, no user-supplied keys:
        NOTES, CVE-2025-67644) reads no checkpoint blobs. Should the saver's schema change, fall
        back to its public API: the latest checkpoint of every thread and its pending writes.
        """
        saver: Any = self.checkpointer
        try:
            if self.db.backend == "postgres":
                with saver.conn.connection() as conn:  # the pool of graph.storage (dict rows)
                    found = conn.execute(
                        "SELECT DISTINCT thread_id FROM checkpoint_writes "
                        "WHERE channel = %s AND checkpoint_ns = ''",
                        (INTERRUPT_CHANNEL,),
                    ).fetchall()
                return [str(r["thread_id"]) for r in found]
            with saver.lock:
                rows = saver.conn.execute(
                    "SELECT DISTINCT thread_id FROM writes WHERE channel = ? AND checkpoint_ns = ''",
                    (INTERRUPT_CHANNEL,),
                ).fetchall()
            return [str(r[0]) for r in rows]
        except Exception as exc:  # sqlite3.OperationalError / psycopg.errors.UndefinedTable, ...
            if not _is_schema_error(exc):
                raise
            log.debug("writes table not as expected (%s); listing checkpoints instead", exc)
        return self._paused_threads_by_listing()

    def _paused_threads_by_listing(self) -> list[str]:
        """Threads whose latest top-level checkpoint has a pending interrupt (public API only)."""
        latest: dict[str, bool] = {}
        for item in self.checkpointer.list(None):  # newest first, so the first seen is the latest
            tid = str(item.config["configurable"]["thread_id"])
            if item.config["configurable"].get("checkpoint_ns", "") == "" and tid not in latest:
                latest[tid] = any(w[1] == INTERRUPT_CHANNEL for w in item.pending_writes or [])
        return [tid for tid, paused in latest.items() if paused]

    def waiting(self, task_id: str | None = None, thread: str | None = None) -> list[WaitingRun]:
        """Runs whose latest state has a pending expert review, oldest first."""
        from graph.expert_reply import REVIEW_KIND
        from graph.runner import run_record

        runs = []
        threads = self._candidate_threads()
        for tid in threads if thread is None else [t for t in threads if t == thread]:
            snapshot = self.graph.get_state({"configurable": {"thread_id": tid}})
            pending = [i.value for i in snapshot.interrupts if isinstance(i.value, dict)]
            if not pending or pending[0].get("kind") != REVIEW_KIND:
                continue
            review = pending[0]
            if task_id is not None and review.get("task_id") != task_id:
                continue
            record = run_record(self.graph, tid) or {}
            runs.append(
                WaitingRun(
                    thread=tid,
                    task_id=str(review.get("task_id")),
                    task_kind=str(review.get("task_kind")),
                    query=review.get("query"),
                    query_index=int(record.get("query_index", 0)),
                    since=snapshot.created_at or datetime.now(UTC).isoformat(),
                    review=review,
                )
            )
        return sorted(runs, key=lambda r: r.since)

    def resume(self, thread: str, reply: dict[str, Any]) -> QueryResult:
        """Answer the review of ``thread`` and run it to the end.

        Raises:
            InvalidInputError: The thread does not wait for an expert, or the reply is invalid
                (checked before anything is resumed: the run keeps waiting).
        """
        from graph.runner import context_from_record, run_query, run_record
        from tasks.schema import Task

        with self.lock:
            config = {"configurable": {"thread_id": thread}}
            snapshot = self.graph.get_state(config)  # type: ignore[arg-type]
            if not snapshot.interrupts:
                raise InvalidInputError(f"thread {thread}: not waiting for an expert")
            record = run_record(self.graph, thread)
            ctx = context_from_record(record, model=self.model_spec)
            values = snapshot.values
            return run_query(
                self.graph,
                Task.model_validate(values["task"]),
                int((record or {}).get("query_index", 0)),
                context=ctx,
                query_input=values["query"]["input"],
                target=values["query"].get("target"),
                thread_id=thread,
                resume=reply,
            )


def _is_schema_error(exc: Exception) -> bool:
    """A missing table or column in our narrow query (not a connection failure)."""
    if isinstance(exc, sqlite3.OperationalError):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn)


def age_text(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(max(seconds, 0))} s"
