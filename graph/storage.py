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

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.base import GetOp, PutOp, Result
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
