"""Durable storage: the SQLite checkpointer (resumable runs) and store (long-term task memory).

Checkpoints are deserialized strictly (msgpack allow-list of nothing beyond LangGraph's own
types, no pickle fallback): the state is JSON-friendly by design, so nothing else is needed, and
a tampered database cannot make us construct arbitrary objects (NOTES: Security).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.sqlite import SqliteStore

from graph.errors import SettingsError

#: Seconds SQLite waits for another writer before "database is locked".
BUSY_TIMEOUT_S = 30.0


def strict_serializer() -> JsonPlusSerializer:
    """The checkpoint serializer with strict msgpack and no pickle."""
    return JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


def _connect(path: Path, what: str, *, autocommit: bool) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        if autocommit:
            conn.isolation_level = None
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
    except (OSError, sqlite3.Error) as exc:
        raise SettingsError(f"{path}: cannot open the {what} database: {exc}") from None
    return conn


def open_checkpointer(path: Path) -> SqliteSaver:
    """A SQLite checkpointer on ``path`` (created if missing)."""
    saver = SqliteSaver(_connect(path, "checkpoint", autocommit=False), serde=strict_serializer())
    try:
        saver.setup()
    except sqlite3.DatabaseError as exc:
        raise SettingsError(f"{path}: not a usable checkpoint database: {exc}") from None
    return saver


def open_store(path: Path) -> SqliteStore:
    """A SQLite store on ``path``; autocommit, else ``put`` after ``setup`` fails (NOTES)."""
    store = SqliteStore(_connect(path, "store", autocommit=True))
    try:
        store.setup()
    except sqlite3.DatabaseError as exc:
        raise SettingsError(f"{path}: not a usable store database: {exc}") from None
    return store
