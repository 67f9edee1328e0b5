"""Durable storage: the SQLite checkpointer (resumable runs) and store (long-term task memory).

Checkpoints are deserialized strictly (msgpack allow-list of nothing beyond LangGraph's own
types, no pickle fallback): the state is JSON-friendly by design, so nothing else is needed, and
a tampered database cannot make us construct arbitrary objects (NOTES: Security).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.serde import _msgpack as lg_msgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer, _create_msgpack_ext_hook
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.sqlite import SqliteStore

from graph.errors import SettingsError

#: Seconds SQLite waits for another writer before "database is locked".
BUSY_TIMEOUT_S = 30.0
#: msgpack extension codes that name a type to build: (module, name, ...) (LangGraph's jsonplus).
_CONSTRUCTING_EXTS = frozenset({0, 1, 2, 3, 4, 5})
#: What reading a corrupt or forged checkpoint raises inside LangGraph and its serializer.
_READ_ERRORS = (ValueError, TypeError, KeyError, IndexError, NotImplementedError)  # msgpack's are ValueErrors


class CheckpointReadError(SettingsError):
    """A stored checkpoint cannot be read: corrupt, or tampered with. Refused, in one line."""


#: Raised while the saver reads a row (the serializer's own failures are CheckpointReadErrors
#: already; a bare ValueError is left alone: the saver raises it for a bad ``list()`` filter).
_SAVER_READ_ERRORS = (CheckpointReadError, json.JSONDecodeError, TypeError, KeyError, IndexError)


class _RefusingExtHook:
    """LangGraph's strict msgpack hook, except that a type outside the allow-list is refused
    (raises) instead of being replaced by its raw arguments, which the graph would then trip over.

    ormsgpack reports a failing hook only as "ext_hook failed": the reason is kept here (per
    thread) for the serializer's message.
    """

    def __init__(self) -> None:
        self.default = _create_msgpack_ext_hook(None)
        self.local = threading.local()

    def __call__(self, code: int, data: bytes) -> Any:
        if code in _CONSTRUCTING_EXTS:
            try:
                named = ormsgpack.unpackb(data, ext_hook=lambda c, d: None, option=ormsgpack.OPT_NON_STR_KEYS)
                key = (str(named[0]), str(named[1]))
            except (ValueError, TypeError, IndexError, KeyError):
                self.local.reason = "malformed msgpack extension"
                raise CheckpointReadError(self.local.reason) from None
            if key not in lg_msgpack.SAFE_MSGPACK_TYPES:
                self.local.reason = f"it names the type {key[0]}.{key[1]}, which is not allowed"
                raise CheckpointReadError(self.local.reason)
        return self.default(code, data)

    def take_reason(self) -> str | None:
        reason = getattr(self.local, "reason", None)
        self.local.reason = None
        return reason


class StrictSerializer(JsonPlusSerializer):
    """Strict msgpack (LangGraph's allow-list only, unknown types refused), no pickle, and every
    failure to read as a one-line :class:`CheckpointReadError`."""

    def __init__(self) -> None:
        self._refusing = hook = _RefusingExtHook()
        super().__init__(pickle_fallback=False, allowed_msgpack_modules=None, __unpack_ext_hook__=hook)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        self._refusing.take_reason()
        try:
            return super().loads_typed(data)
        except CheckpointReadError:
            raise
        except _READ_ERRORS as exc:
            reason = self._refusing.take_reason() or f"{type(exc).__name__}: {_one_line(exc)}"
            raise CheckpointReadError(reason) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def strict_serializer() -> JsonPlusSerializer:
    """The checkpoint serializer with strict msgpack and no pickle."""
    return StrictSerializer()


class StrictSqliteSaver(SqliteSaver):
    """A :class:`SqliteSaver` whose reads refuse a corrupt or forged checkpoint in one line
    naming the database (found by ``python -m graph.chaos --family tamper``)."""

    def __init__(self, conn: sqlite3.Connection, *, path: Path) -> None:
        super().__init__(conn, serde=strict_serializer())
        self.path = path

    def _refused(self, exc: BaseException) -> CheckpointReadError:
        reason = _one_line(exc)
        if not isinstance(exc, CheckpointReadError):
            reason = f"{type(exc).__name__}: {reason}"
        return CheckpointReadError(
            f"{self.path}: a checkpoint cannot be read (corrupt or tampered with), refused: {reason}"
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        try:
            return super().get_tuple(config)
        except _SAVER_READ_ERRORS as exc:
            raise self._refused(exc) from None

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:
        items = super().list(config, **kwargs)
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            except _SAVER_READ_ERRORS as exc:
                raise self._refused(exc) from None
            yield item


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


def open_checkpointer(path: Path) -> StrictSqliteSaver:
    """A SQLite checkpointer on ``path`` (created if missing)."""
    saver = StrictSqliteSaver(_connect(path, "checkpoint", autocommit=False), path=path)
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
