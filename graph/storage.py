"""Durable storage: the checkpointer (resumable runs) and store (long-term task memory).

Two backends, chosen by the database spec (``--db`` / ``MOCKINGBIRD_DB``):

* a path, or ``sqlite:///PATH``: one SQLite file (a single machine; one writer at a time);
* ``postgresql://user[:password]@host[:port]/dbname`` (or ``postgres://``): a PostgreSQL database
  shared by many processes and machines, through ``langgraph-checkpoint-postgres`` on a psycopg 3
  connection pool (one pool per database and process, shared by the checkpointer and the store).

A URL is never taken for a path: any other ``scheme://`` is a one-line error. Schema set-up
(LangGraph's migrations) is idempotent and, on PostgreSQL, serialised by an advisory lock so
workers starting together do not race.

Several processes may share one database (``graph.run``, the terminal reviewer, the review page):

- a read-modify-write of the store (evidence sums, notes) is one SQLite transaction
  (``BEGIN IMMEDIATE``: one writer at a time, the others wait up to :data:`BUSY_TIMEOUT_S`), so
  no update is lost (:meth:`MockingbirdStore.atomic_update`); on PostgreSQL one transaction
  holding an advisory lock on the item (``MockingbirdPostgresStore.atomic_update``);
- a thread runs in one process at a time: on SQLite :class:`ThreadLeases` keeps a lease row per
  running thread, taken in a transaction; a lease whose process is gone (same host) is taken
  over. On PostgreSQL :class:`PostgresThreadLeases` holds a session advisory lock per running
  thread, which the server releases when the holder's connection (or process) ends.

Checkpoints are deserialized strictly (msgpack allow-list of nothing beyond LangGraph's own
types, no pickle fallback): the state is JSON-friendly by design, so nothing else is needed, and
a tampered database cannot make us construct arbitrary objects (NOTES: Security).

:func:`graph.memory.update_item` is the one read-modify-write of a store item: it calls the
store's ``atomic_update`` (both stores here) or, for in-memory stores, takes a process lock, so
running sums and lists of many workers lose nothing.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.serde import _msgpack as lg_msgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer, _create_msgpack_ext_hook
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.base import BaseStore, GetOp, PutOp, Result
from langgraph.store.sqlite import SqliteStore

from graph.errors import SettingsError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from psycopg_pool import ConnectionPool

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


#: Seconds to wait for a PostgreSQL connection (a wrong host fails within this).
CONNECT_TIMEOUT_S = 10
#: Connections per PostgreSQL pool (per process): the checkpointer, the store and one lock holder.
POOL_MAX_SIZE = 8
#: ``pg_advisory_lock`` key held while LangGraph's migrations run (any fixed 64-bit number).
SETUP_LOCK_KEY = 0x4D6F636B696E67  # "Mocking"
#: Seconds to wait for another process's table set-up.
SETUP_WAIT_S = 120.0

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Database:
    """Where checkpoints and task memory live.

    Attributes:
        backend: ``sqlite`` or ``postgres``.
        path: The SQLite file (``sqlite`` only).
        url: The PostgreSQL connection URL, password included if the user gave one (``postgres``
            only; never print it: ``str(db)`` is the redacted form).
        schema: PostgreSQL schema to keep the tables in instead of ``public`` (the bench's scratch
            state); empty = the server's ``search_path``.
    """

    backend: Literal["sqlite", "postgres"]
    path: Path | None = None
    url: str = ""
    schema: str = ""

    def __str__(self) -> str:
        if self.backend == "sqlite":
            return str(self.path)
        return redact_url(self.url) + (f" (schema {self.schema})" if self.schema else "")

    @property
    def cli_arg(self) -> str:
        """What to pass as ``--db`` to reach this database again (password removed: libpq then
        reads ``PGPASSWORD`` or ``~/.pgpass``)."""
        return str(self.path) if self.backend == "sqlite" else strip_password(self.url)

    def exists(self) -> bool:
        """Whether there is anything to open (a SQLite file must exist; a server is asked later)."""
        return self.backend == "postgres" or (self.path is not None and self.path.exists())


def parse_db(spec: str | Path | Database, source: str = "--db") -> Database:
    """The database a ``--db`` / ``MOCKINGBIRD_DB`` value names.

    Args:
        spec: A path, ``sqlite:///PATH``, ``postgresql://...`` / ``postgres://...``, or a
            :class:`Database` (returned as is).
        source: The flag or variable it came from, for error messages.

    Raises:
        SettingsError: An unsupported URL scheme or a malformed PostgreSQL URL.
    """
    if isinstance(spec, Database):
        return spec
    if isinstance(spec, Path):
        return Database("sqlite", path=spec)
    text = spec.strip()
    if not text:
        raise SettingsError(f"{source}: empty; give a path, sqlite:///PATH or postgresql://...")
    match = _URL_SCHEME.match(text)
    if match is None:
        return Database("sqlite", path=Path(text))
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        rest = text[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise SettingsError(f"{source}: expected sqlite:///PATH (three slashes), got {text!r}")
        return Database("sqlite", path=Path(rest[1:] or "/"))
    if scheme in _POSTGRES_SCHEMES:
        try:
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:
            raise SettingsError(
                f"{source}: PostgreSQL needs the postgres extra: pip install 'mockingbird-graph[postgres]'"
            ) from None
        try:
            conninfo_to_dict(text)
        except Exception as exc:  # psycopg.ProgrammingError: libpq's own parse error
            raise SettingsError(f"{source}: not a valid PostgreSQL URL ({_first_line(exc)})") from None
        return Database("postgres", url=text)
    raise SettingsError(
        f"{source}: unsupported database URL scheme {scheme!r}; give a path, sqlite:///PATH or postgresql://..."
    )


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def strip_password(url: str) -> str:
    """``url`` without any password (to print a command a user can run again)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{host}"
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "password"]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(pairs), parts.fragment))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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


# --- SQLite -----------------------------------------------------------------------------------


def _connect(path: Path, what: str, *, autocommit: bool) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        if autocommit:
            conn.isolation_level = None
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            # Switching to WAL takes an exclusive lock and answers "database is locked" at once,
            # without the busy handler, when another connection opens the new file meanwhile.
            with _sqlite_setup_lock(path):
                conn.execute("PRAGMA journal_mode = WAL")
    except (OSError, sqlite3.Error) as exc:
        raise SettingsError(f"{path}: cannot open the {what} database: {exc}") from None
    return conn


@contextmanager
def _sqlite_setup_lock(path: Path) -> Iterator[None]:
    """Serialise LangGraph's SQLite migrations across threads and processes (``<db>.setup-lock``).

    They are not safe to run twice at once (``ALTER TABLE ... ADD COLUMN`` twice: "duplicate column
    name"), and their ``executescript`` commits any transaction we could hold around them, so an
    advisory file lock it is. Without ``fcntl`` (Windows) set-up runs unguarded.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    with open(path.with_name(path.name + ".setup-lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _setup_sqlite(path: Path, setup: Callable[[], None], what: str) -> None:
    """Run LangGraph's migrations on the SQLite file ``path`` under :func:`_sqlite_setup_lock`.

    Raises:
        SettingsError: The file is not a usable ``what`` database (one line).
    """
    try:
        with _sqlite_setup_lock(path):
            setup()
    except sqlite3.DatabaseError as exc:
        raise SettingsError(f"{path}: not a usable {what} database: {exc}") from None


# --- PostgreSQL -------------------------------------------------------------------------------

_POOLS: dict[tuple[str, str], ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(db: Database) -> ConnectionPool:
    """This process's connection pool for ``db`` (opened on first use; checked by a real connect)."""
    key = (db.url, db.schema)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is not None:
            return pool
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise SettingsError(
                f"{db}: PostgreSQL needs the postgres extra: pip install 'mockingbird-graph[postgres]'"
            ) from None
        if db.schema and not _SCHEMA_NAME.match(db.schema):
            raise SettingsError(f"{db}: schema name {db.schema!r} is not a plain lower-case identifier")
        # What langgraph-checkpoint-postgres requires of its connections: autocommit, dict rows,
        # no server-side prepared statements (they break behind poolers such as PgBouncer).
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
        if db.schema:
            options["options"] = f"-c search_path={db.schema}"
        try:  # one direct connection first: the pool would only say "timed out", not why
            psycopg.connect(db.url, **options).close()
        except psycopg.Error as exc:
            raise SettingsError(f"{db}: cannot connect to PostgreSQL: {_first_line(exc)}") from None
        pool = ConnectionPool(
            db.url,
            min_size=1,
            max_size=POOL_MAX_SIZE,
            kwargs=kwargs | options,
            open=False,
            name="mockingbird",
        )
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        _POOLS[key] = pool
        return pool


def close_pools(db: Database | None = None) -> None:
    """Close this process's PostgreSQL pools (of ``db`` only, when given); they reopen on demand."""
    with _POOLS_LOCK:
        keys = [k for k in _POOLS if db is None or k == (db.url, db.schema)]
        pools = [_POOLS.pop(k) for k in keys]
    for pool in pools:
        pool.close()


atexit.register(close_pools)


def _setup_postgres(pool: ConnectionPool, setup: Callable[[], None], db: Database, what: str) -> None:
    """Run LangGraph's migrations under a session advisory lock: idempotent, and concurrent
    starts (many workers at once) wait for each other instead of racing on ``CREATE TABLE``.

    Waiters poll ``pg_try_advisory_lock`` rather than block in ``pg_advisory_lock``: a blocked
    statement is an open transaction, and the migrations' ``CREATE INDEX CONCURRENTLY`` waits for
    every open transaction to end, a deadlock PostgreSQL does not detect (advisory locks).
    """
    import psycopg

    try:
        with pool.connection() as conn:
            deadline = time.monotonic() + SETUP_WAIT_S
            while not _try_lock(conn):
                if time.monotonic() > deadline:
                    raise SettingsError(f"{db}: another process has been setting up the tables for too long")
                time.sleep(0.05)
            try:
                setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))
    except psycopg.Error as exc:
        raise SettingsError(f"{db}: cannot set up the {what} tables: {_first_line(exc)}") from None


def _try_lock(conn: Any) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (SETUP_LOCK_KEY,)).fetchone()
    return bool(row and row["ok"])


def create_schema(db: Database, schema: str) -> Database:
    """Create an empty PostgreSQL schema on ``db``'s server; returns ``db`` pointed at it."""
    import psycopg

    if not _SCHEMA_NAME.match(schema):
        raise SettingsError(f"schema name {schema!r} is not a plain lower-case identifier")
    with _pool(Database("postgres", url=db.url)).connection() as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(psycopg.sql.Identifier(schema)))
    return Database("postgres", url=db.url, schema=schema)


def drop_schema(db: Database) -> None:
    """Drop ``db``'s schema and everything in it (the bench's scratch state)."""
    import psycopg

    if not db.schema:
        raise ValueError("drop_schema: the database names no schema")
    close_pools(db)
    with _pool(Database("postgres", url=db.url)).connection() as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(db.schema))
        )


# --- opening ----------------------------------------------------------------------------------


def open_checkpointer(db: str | Path | Database) -> BaseCheckpointSaver[Any]:
    """The checkpointer on ``db`` (a SQLite file is created if missing; tables set up)."""
    where = parse_db(db)
    if where.backend == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver

        pool = _pool(where)
        pg_saver = PostgresSaver(cast(Any, pool), serde=strict_serializer())  # pool typing varies by version
        _setup_postgres(pool, pg_saver.setup, where, "checkpoint")
        _PG_SAVERS[pg_saver] = where
        return pg_saver
    assert where.path is not None
    saver = StrictSqliteSaver(_connect(where.path, "checkpoint", autocommit=False), path=where.path)
    _setup_sqlite(where.path, saver.setup, "checkpoint")
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

    def atomic_commit(
        self,
        puts: list[PutOp],
        updates: list[tuple[tuple[str, ...], str, Callable[[dict[str, Any] | None], dict[str, Any]]]],
    ) -> None:
        """Read-modify-writes and plain writes in one ``BEGIN IMMEDIATE`` transaction: all or none
        survive a kill, and no other process's update interleaves."""
        if not self.is_setup:
            self.setup()
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self.conn.cursor()
                for namespace, key, update in updates:
                    results: list[Result] = [None]
                    self._batch_get_ops([(0, GetOp(namespace, key))], results, cur)
                    old = results[0]
                    new = update(dict(old.value) if old is not None else None)  # type: ignore[union-attr]
                    self._batch_put_ops([(0, PutOp(namespace, key, new))], cur)
                if puts:
                    self._batch_put_ops(list(enumerate(puts)), cur)
                cur.close()
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")


@functools.cache
def _postgres_store_class() -> type[BaseStore]:
    """:class:`MockingbirdPostgresStore`'s class, built on first use (the postgres extra is optional)."""
    from langgraph.store.postgres import PostgresStore

    class MockingbirdPostgresStore(PostgresStore):
        """LangGraph's PostgreSQL store, plus the same atomic read-modify-write as
        :class:`MockingbirdStore`."""

        def atomic_update(
            self,
            namespace: tuple[str, ...],
            key: str,
            update: Callable[[dict[str, Any] | None], dict[str, Any]],
        ) -> dict[str, Any]:
            """Replace the item at ``(namespace, key)`` by ``update(old value or None)``, atomically.

            One transaction holding a transaction-scoped advisory lock on the item: writers of the
            same item (any process, any machine) wait for each other, writers of others do not.

            Returns:
                The new value.
            """
            pool_or_conn: Any = self.conn
            held = (
                pool_or_conn.connection()
                if hasattr(pool_or_conn, "connection")
                else nullcontext(pool_or_conn)
            )
            with held as conn, conn.transaction():
                lock_name = "\x1f".join(namespace) + "\x1e" + key
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_name,))
                joined = PostgresStore(conn)  # statements on this connection: inside the transaction
                item = joined.get(namespace, key)
                new = update(dict(item.value) if item is not None else None)
                joined.put(namespace, key, new)
            return new

    return MockingbirdPostgresStore


def open_store(db: str | Path | Database) -> BaseStore:
    """The long-term store on ``db`` (:class:`MockingbirdStore` on SQLite, in autocommit, else
    ``put`` after ``setup`` fails (NOTES); its PostgreSQL counterpart on a server)."""
    where = parse_db(db)
    if where.backend == "postgres":
        pool = _pool(where)
        pg_store: Any = _postgres_store_class()(pool)  # type: ignore[call-arg]
        _setup_postgres(pool, pg_store.setup, where, "store")
        return pg_store
    assert where.path is not None
    store = MockingbirdStore(_connect(where.path, "store", autocommit=True))
    _setup_sqlite(where.path, store.setup, "store")
    return store


class ThreadBusy(Exception):
    """Another process (or thread) is running this checkpoint thread now."""

    def __init__(self, thread_id: str, pid: int | None = None, host: str = "") -> None:
        if pid is None:  # PostgreSQL: the holder is a session on the server, not a local pid
            where = "another process"
        else:
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
    def for_saver(cls, saver: Any) -> ThreadLeases | PostgresThreadLeases | None:
        """Leases on the database of a SQLite or PostgreSQL checkpointer opened by
        :func:`open_checkpointer` (``None`` for other savers)."""
        pg_db = _PG_SAVERS.get(saver)
        if pg_db is not None:
            return PostgresThreadLeases(pg_db)
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


#: The database of each PostgreSQL checkpointer :func:`open_checkpointer` opened (for its leases).
_PG_SAVERS: weakref.WeakKeyDictionary[Any, Database] = weakref.WeakKeyDictionary()


class PostgresThreadLeases:
    """:class:`ThreadLeases` on PostgreSQL: a session advisory lock per running thread.

    The lock lives on a connection of its own, opened for the run (not one of the pool's, which a
    process with many concurrent runs would exhaust); the server releases it when that connection
    ends, so a process that dies holding a thread does not block it. Locks are per database and
    schema: the same thread id in two schemas (the bench's scratch state) are two threads.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def hold(self, thread_id: str) -> Iterator[None]:
        """Hold ``thread_id``'s lock for the block.

        Raises:
            ThreadBusy: Another session (process) holds it.
            SettingsError: The server cannot be reached.
        """
        import psycopg

        options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True}
        try:
            conn = psycopg.connect(self.db.url, **options)
        except psycopg.Error as exc:
            raise SettingsError(f"{self.db}: cannot connect to PostgreSQL: {_first_line(exc)}") from None
        try:
            name = f"mockingbird-thread\x1f{self.db.schema}\x1f{thread_id}"
            row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)).fetchone()
            if not (row and row[0]):
                raise ThreadBusy(thread_id)
            try:
                yield
            finally:
                # Unlocked before closing: the server frees a closed session's locks only when its
                # backend exits, after close() returns, and a run resumed at once was refused
                # (seen under load in the test suite). A dead process still frees it on exit.
                with suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
        finally:
            conn.close()
