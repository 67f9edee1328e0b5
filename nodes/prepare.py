"""``prepare``: validate the task and query, and gather the task's notes."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from pydantic import ValidationError

from graph.context import Context
from graph.errors import InvalidInputError
from graph.memory import migrate_legacy_memory, query_key, task_examples, task_notes
from graph.state import State
from nodes.common import cost_entry
from tasks.errors import error_line
from tasks.schema import Task, check_query


def load_task(raw: dict[str, Any]) -> Task:
    """Validate the state's task dict into a :class:`Task`, with a one-line error."""
    try:
        return Task.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInputError(error_line(exc, "task")) from None


def prepare(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Check the input and collect notes (from the task file and the long-term store)."""
    started = time.perf_counter()
    task = load_task(state["task"])
    query = state.get("query") or {}
    if "input" not in query:
        raise InvalidInputError("query.input: missing")
    try:
        check_query(task, query["input"])
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    store = runtime.store if runtime else None
    migrated = migrate_legacy_memory(store, task)
    stored = task_notes(store, task.key)
    notes = list(dict.fromkeys([*task.notes, *stored]))  # keep order, drop repeats
    update: dict[str, Any] = {}
    # Examples an expert labelled earlier join the demonstrations (never the query itself).
    known = {query_key(e.input) for e in task.train} | {query_key(query["input"])}
    added = [e for e in task_examples(store, task.key) if query_key(e["input"]) not in known]
    if added:
        task = Task.model_validate(task.model_dump() | {"train": [*task.model_dump()["train"], *added]})
        update["task"] = task.model_dump()
    return update | {
        "notes": notes,
        "costs": [cost_entry("prepare", started)],
        "trace": [
            {
                "node": "prepare",
                "message": f"task {task.id} ({task.kind}), {len(task.train)} demonstrations, "
                f"{len(notes)} notes"
                + (f", {len(added)} expert-labelled examples added" if added else "")
                + (f", {migrated} memory items moved from the old id" if migrated else ""),
            }
        ],
    }
