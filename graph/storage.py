"""Durable storage: the checkpointer (resumable runs) and store (long-term task memory).

Two backends, chosen by the database spec (``--db`` / ``MOCKINGBIRD_DB``):

* a path, or ``sqlite:///PATH``: one SQLite file (a single machine; one writer at a time);
* ``postgresql://user[:password]@host[:port]/dbname`` (or ``postgres://``): a PostgreSQL database
  shared by many processes and machines, through ``langgraph-checkpoint-postgres`` on a psycopg 3
  connection pool (one pool per database and process, shared by the checkpointer and the store).

A URL is never taken for a path: any other ``scheme://`` is a one-line error. Schema set-up
(LangGraph's migrations) is idempotent and, on PostgreSQL, serialised by an advisory lock so
workers starting together do not race.

Checkpoints are deserialized strictly (msgpack allow-list of nothing beyond LangGraph's own
types, no pickle fallback): the state is JSON-friendly by design, so nothing else is needed, and
a tampered database cannot make us construct arbitrary objects (NOTES: Security).

:func:`update_item` is the one read-modify-write of a store item, atomic across threads and
processes on every backend (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL transaction-scoped advisory
lock, a process lock for in-memory stores): running sums and lists of many workers lose nothing.
"""

from __future__ import annotations

import atexit
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.base import BaseStore
from langgraph.store.sqlite import SqliteStore

from graph.errors import SettingsError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from psycopg_pool import ConnectionPool

#: Seconds SQLite waits for another writer before "database is locked".
BUSY_TIMEOUT_S = 30.0
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
    return JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


# --- SQLite -----------------------------------------------------------------------------------


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
        pg_saver = PostgresSaver(pool, serde=strict_serializer())  # type: ignore[arg-type]
        _setup_postgres(pool, pg_saver.setup, where, "checkpoint")
        return pg_saver
    assert where.path is not None
    saver = SqliteSaver(_connect(where.path, "checkpoint", autocommit=False), serde=strict_serializer())
    try:
        with _sqlite_setup_lock(where.path):
            saver.setup()
    except sqlite3.DatabaseError as exc:
        raise SettingsError(f"{where.path}: not a usable checkpoint database: {exc}") from None
    return saver


def open_store(db: str | Path | Database) -> BaseStore:
    """The long-term store on ``db``; SQLite in autocommit, else ``put`` after ``setup`` fails (NOTES)."""
    where = parse_db(db)
    if where.backend == "postgres":
        from langgraph.store.postgres import PostgresStore

        pool = _pool(where)
        pg_store = PostgresStore(pool)  # type: ignore[arg-type]
        _setup_postgres(pool, pg_store.setup, where, "store")
        return pg_store
    assert where.path is not None
    store = SqliteStore(_connect(where.path, "store", autocommit=True))
    try:
        with _sqlite_setup_lock(where.path):
            store.setup()
    except sqlite3.DatabaseError as exc:
        raise SettingsError(f"{where.path}: not a usable store database: {exc}") from None
    return store


# --- atomic read-modify-write -----------------------------------------------------------------

_MEMORY_LOCK = threading.Lock()


class _SqliteInTransaction(SqliteStore):
    """A SqliteStore whose operations join the transaction the caller opened on ``conn``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.is_setup = True

    @contextmanager
    def _cursor(self, *, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        cur = self.conn.cursor()
        try:
            yield cur
        finally:
            cur.close()


def update_item(
    store: BaseStore, namespace: tuple[str, ...], key: str, update: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """Replace the item at ``(namespace, key)`` by ``update(current value or {})``, atomically.

    No other thread or process updates the same item in between, so concurrent read-modify-writes
    (running sums, appended notes) lose nothing: on SQLite the write lock is taken before the read
    (``BEGIN IMMEDIATE``); on PostgreSQL a transaction-scoped advisory lock on the item serialises
    writers of that item only; other stores (in memory, one process) use a process lock.
    ``update`` must not touch the store itself.

    Returns:
        The value written.
    """
    if isinstance(store, SqliteStore):
        store.setup()  # before taking the lock: setup takes it too
        with store.lock:  # no other thread of this process uses the connection meanwhile
            store.conn.execute("BEGIN IMMEDIATE")
            try:
                joined = _SqliteInTransaction(store.conn)
                item = joined.get(namespace, key)
                value = update(dict(item.value) if item else {})
                joined.put(namespace, key, value)
            except BaseException:
                store.conn.execute("ROLLBACK")
                raise
            store.conn.execute("COMMIT")
        return value
    try:
        from langgraph.store.postgres import PostgresStore
    except ImportError:  # the postgres extra is not installed: no PostgreSQL store exists either
        PostgresStore = None  # type: ignore[assignment,misc]
    if PostgresStore is not None and isinstance(store, PostgresStore):
        pool_or_conn: Any = store.conn
        held = pool_or_conn.connection() if hasattr(pool_or_conn, "connection") else nullcontext(pool_or_conn)
        with held as conn, conn.transaction():
            lock_name = "\x1f".join(namespace) + "\x1e" + key
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_name,))
            joined_pg = PostgresStore(conn)  # statements on this connection: inside the transaction
            item = joined_pg.get(namespace, key)
            value = update(dict(item.value) if item else {})
            joined_pg.put(namespace, key, value)
        return value
    with _MEMORY_LOCK:
        item = store.get(namespace, key)
        value = update(dict(item.value) if item else {})
        store.put(namespace, key, value)
    return value
