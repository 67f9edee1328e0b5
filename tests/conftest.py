"""Shared test fixtures: tiny local checkpoints built on the fly (no downloads, < 1 s each) and a
real PostgreSQL cluster of the session's own (``db`` runs a test on SQLite and on PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def in_ci() -> bool:
    """Whether the tests run in CI (``.ci/run`` sets ``CI=true``, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a skip of a test marked ``required_in_ci`` is a failure: CI installs the component
    (Chromium, ``transformers serve``...), so a skip there means the claim went untested."""
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("required_in_ci")
    if report.skipped and marker is not None and in_ci() and not hasattr(report, "wasxfail"):
        component = marker.args[0] if marker.args else "a required component"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where {component} must be installed: {reason}"


#: The ``required_in_ci`` component of every test that runs on the session's PostgreSQL cluster.
POSTGRES_COMPONENT = "PostgreSQL (apt-get install postgresql)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on PostgreSQL (the ``postgres`` fixture, or ``db`` on its ``postgres`` side) are
    ``required_in_ci``: without ``initdb`` they skip locally, in CI they fail."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db") == "postgres"
        if on_postgres or "postgres" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.required_in_ci(POSTGRES_COMPONENT))


#: Variables that configure runs: a developer's shell (or CI) must not change what tests see.
SETTINGS_ENV = ("MOCKINGBIRD_", "OPENAI_API_KEY", "OPENAI_BASE_URL")


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear ``MOCKINGBIRD_*`` and the OpenAI variables; a test that needs one sets it itself.

    ``.env`` files never reach tests either: library code does not read them (only the CLIs do,
    from their working directory, and the CLI tests run in a fresh temporary one).
    """
    for name in list(os.environ):
        if name.startswith(SETTINGS_ENV):
            monkeypatch.delenv(name)


def build_tiny_checkpoint(path: Path, *, compact: bool = True, seed: int = 0) -> Path:
    """Save a randomly initialised tiny Llama with the project's char-level tokenizer.

    Args:
        path: Directory to write (created).
        compact: Write ``mockingbird.json`` ``{"format": "compact"}`` (the embedded model's
            marker); without it backends render the role-play chat prompt.
        seed: torch seed for the initial weights.

    Returns:
        ``path``.
    """
    from graph.chaos.tiny import build_tiny_checkpoint as build  # one builder, shared with the chaos suite

    return build(path, seed=seed, compact=compact)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama checkpoint marked as compact-format (like the embedded model)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "compact", compact=True)


@pytest.fixture(scope="session")
def tiny_chat_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model without the compact marker: rendered with the chat prompt."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "chat", compact=False)


def build_tiny_table_checkpoint(path: Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised tiny table model (:mod:`models.table_model`)."""
    from models.table_model import build_table_model, save_table_checkpoint

    save_table_checkpoint(build_table_model(hidden=32, layers=1, heads=2, seed=seed), path, {})
    return path


@pytest.fixture(scope="session")
def tiny_table_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random table model checkpoint (the embedded model's table specialist, untrained)."""
    return build_tiny_table_checkpoint(tmp_path_factory.mktemp("tiny") / "table")


@pytest.fixture
def tiny(tiny_checkpoint: Path):
    """The tiny compact checkpoint loaded as a backend, fresh (the model cache cleared first)."""
    from models.factory import clear_model_cache, load_model

    clear_model_cache()
    return load_model(f"hf:{tiny_checkpoint}")


@pytest.fixture
def no_cached_adapters():
    """The TTT adapter cache is process-wide and keyed on weights: keep tests independent."""
    from models.adapter_cache import ADAPTERS

    ADAPTERS.clear()
    yield
    ADAPTERS.clear()


# --- PostgreSQL: a real cluster of our own, started once per session --------------------------


def _find_initdb() -> str | None:
    """``initdb`` on PATH, else the newest Debian/Ubuntu install (``/usr/lib/postgresql/N/bin``)."""
    found = shutil.which("initdb")
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return str(versions[-1]) if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, user ``mb``), one database per test."""

    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root, self.port, self.run_as = root, port, run_as
        self._n = 0

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://mb@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        self._n += 1
        name = f"t{os.getpid()}_{self._n}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        from graph.storage import close_pools, parse_db

        close_pools(parse_db(url))
        self.admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _start_cluster(initdb: str) -> PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a temp folder on a free port; as ``postgres`` when root
    (initdb refuses to run as root)."""
    bindir = Path(initdb).resolve().parent
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="mb-pg-"))  # not under pytest's 0700 tmp: the user must reach it
    if run_as:
        shutil.chown(root, user=run_as)
    port = _free_port()
    data = root / "data"
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "mb", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, user=run_as,
    )  # fmt: skip
    options = f"-k {root} -h 127.0.0.1 -p {port} -F -c max_connections=200"
    subprocess.run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True, capture_output=True, user=run_as,
    )  # fmt: skip
    return PostgresCluster(root, port, run_as)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the session. Without ``initdb`` (or when it cannot start) the
    tests skip; in CI (``CI=true``) such a skip fails (``required_in_ci``, set on every test that
    uses this fixture by :func:`pytest_collection_modifyitems`): CI installs PostgreSQL."""
    initdb = _find_initdb()
    if initdb is None:
        pytest.skip("PostgreSQL (initdb) is not installed: apt-get install -y postgresql")
    try:
        cluster = _start_cluster(initdb)
    except (subprocess.CalledProcessError, OSError, KeyError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot start PostgreSQL: {exc} {detail.decode(errors='replace')[-500:]}")
    yield cluster
    from graph.storage import close_pools

    close_pools()
    bindir = Path(initdb).resolve().parent
    subprocess.run(
        [str(bindir / "pg_ctl"), "-D", str(cluster.root / "data"), "-m", "immediate", "stop"],
        capture_output=True, user=cluster.run_as,
    )  # fmt: skip
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """An empty database for one test, once per backend: a SQLite file, or a new database on the
    session's PostgreSQL cluster (its URL)."""
    if request.param == "sqlite":
        yield tmp_path / "mb.sqlite"
        return
    cluster = request.getfixturevalue("postgres")
    url = cluster.new_database()
    yield url
    cluster.drop_database(url)
