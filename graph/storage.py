"""Durable storage: the SQLite checkpointer (resumable runs) and store (long-term task memory).

Several processes may share one database (``graph.run``, the terminal reviewer, the review page):

- a read-modify-write of the store (evidence sums, notes) is one SQLite transaction
  (``BEGIN IMMEDIATE``: one writer at a time, the others wait up to :data:`BUSY_TIMEOUT_S`), so
  no update is lost (:meth:`MockingbirdStore.atomic_update`);
- a thread runs in one process at a time: :class:`ThreadLeases` keeps a lease row per running
  thread, taken in a transaction; a lease whose process is gone (same host) is taken over.

Checkpoints are deserialized strictly (msgpack allow-list of nothing beyond LangGraph's own
types, no pickle fallback): the state is JSON-friendly by design, so nothing else is needed, and
a tampered database cannot make us construct arbitrary objects (NOTES: Security).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.serde import _msgpack as lg_msgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer, _create_msgpack_ext_hook
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.base import GetOp, PutOp, Result
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


class MockingbirdStore(SqliteStore):
    """LangGraph's SQLite store, plus an atomic read-modify-write across threads and processes."""

    def atomic_update(
        self, namespace: tuple[str, ...], key: str, update: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Replace the item at ``(namespace, key)`` by ``update(old value or None)``, atomically.

        The read and the write are one ``BEGIN IMMEDIATE`` transaction: another process's update of
        the same database waits (busy timeout) instead of interleaving, so none is lost.

        Returns:
            The new value.
        """
        if not self.is_setup:
            self.setup()
        with self.lock:  # this process's threads share the connection
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self.conn.cursor()
                results: list[Result] = [None]
                self._batch_get_ops([(0, GetOp(namespace, key))], results, cur)
                old = results[0]
                new = update(dict(old.value) if old is not None else None)  # type: ignore[union-attr]
                self._batch_put_ops([(0, PutOp(namespace, key, new))], cur)
                cur.close()
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        return new


def open_store(path: Path) -> MockingbirdStore:
    """A SQLite store on ``path``; autocommit, else ``put`` after ``setup`` fails (NOTES)."""
    store = MockingbirdStore(_connect(path, "store", autocommit=True))
    try:
        store.setup()
    except sqlite3.DatabaseError as exc:
        raise SettingsError(f"{path}: not a usable store database: {exc}") from None
    return store


class ThreadBusy(Exception):
    """Another process (or thread) is running this checkpoint thread now."""

    def __init__(self, thread_id: str, pid: int, host: str) -> None:
        where = f"process {pid}" + ("" if host == socket.gethostname() else f" on {host}")
        super().__init__(f"thread {thread_id}: {where} is running or resuming it now; try again later")


#: One lease connection per checkpointer.
_LEASES: weakref.WeakKeyDictionary[Any, ThreadLeases] = weakref.WeakKeyDictionary()

#: A lease of another host whose age passes this is taken over (its liveness cannot be checked).
FOREIGN_LEASE_STALE_S = 6 * 3600.0


class ThreadLeases:
    """One lease row per running thread in the database: runs and resumes are exclusive.

    The lease is taken in a ``BEGIN IMMEDIATE`` transaction (so two processes cannot both see it
    free) and given back when the run returns, fails or pauses. A process that died holding one
    (checked by pid on the same host) does not block the thread: its lease is taken over.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = _connect(path, "lease", autocommit=True)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS mockingbird_thread_leases (thread_id TEXT PRIMARY KEY, "
            "owner TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, since REAL NOT NULL)"
        )
        self.lock = threading.Lock()

    @classmethod
    def for_saver(cls, saver: Any) -> ThreadLeases | None:
        """Leases on the database file of a SQLite checkpointer (``None`` for other savers)."""
        if not isinstance(saver, SqliteSaver):
            return None
        if saver in _LEASES:
            return _LEASES[saver]
        with saver.lock:
            rows = saver.conn.execute("PRAGMA database_list").fetchall()
        main = next((r[2] for r in rows if r[1] == "main"), "")
        leases = cls(Path(main)) if main else None  # an in-memory database: one process only
        if leases is not None:
            _LEASES[saver] = leases
        return leases

    @staticmethod
    def _alive(pid: int, host: str, since: float) -> bool:
        if host != socket.gethostname():
            return time.time() - since < FOREIGN_LEASE_STALE_S
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # exists, owned by someone else
        return True

    @contextmanager
    def hold(self, thread_id: str) -> Iterator[None]:
        """Hold ``thread_id``'s lease for the block.

        Raises:
            ThreadBusy: A live process holds it.
        """
        owner = uuid.uuid4().hex
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                row = self.conn.execute(
                    "SELECT pid, host, since FROM mockingbird_thread_leases WHERE thread_id = ?", (thread_id,)
                ).fetchone()
                if row is not None and self._alive(int(row[0]), str(row[1]), float(row[2])):
                    raise ThreadBusy(thread_id, int(row[0]), str(row[1]))
                self.conn.execute(
                    "INSERT OR REPLACE INTO mockingbird_thread_leases VALUES (?, ?, ?, ?, ?)",
                    (thread_id, owner, os.getpid(), socket.gethostname(), time.time()),
                )
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        try:
            yield
        finally:
            with self.lock:
                self.conn.execute(
                    "DELETE FROM mockingbird_thread_leases WHERE thread_id = ? AND owner = ?",
                    (thread_id, owner),
                )
