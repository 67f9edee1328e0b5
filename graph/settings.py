"""Process-level settings shared by the CLIs: ``.env`` loading and the database.

Per-run knobs live in :class:`graph.context.Context`; this module only holds what is about the
process (where the database is, where the bundled tasks are).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import load_dotenv

if TYPE_CHECKING:
    from graph.storage import Database

#: Bundled example tasks (the default of ``python -m graph.run``).
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "tasks" / "examples"
#: Default database for checkpoints and long-term task memory (SQLite; ``postgresql://`` for many
#: processes or machines, see :mod:`graph.storage`).
DEFAULT_DB = Path(".mockingbird") / "mockingbird.sqlite"


def load_dotenv_file(path: Path | None = None) -> None:
    """Load ``.env`` (from the working directory by default); real environment variables win."""
    load_dotenv(path or Path.cwd() / ".env", override=False)
    # Strict checkpoint deserialization unless the user explicitly chose otherwise (NOTES: Security).
    os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")


def database(override: str | None = None) -> Database:
    """The checkpoint/store database: flag > ``MOCKINGBIRD_DB`` > ``.mockingbird/mockingbird.sqlite``.

    A path or ``sqlite:///PATH`` is a SQLite file; ``postgresql://...`` a PostgreSQL database.

    Raises:
        SettingsError: An unsupported URL scheme or a malformed URL (naming the flag or variable).
    """
    from graph.storage import parse_db

    if override:
        return parse_db(override, "--db")
    env = os.environ.get("MOCKINGBIRD_DB")
    if env:
        return parse_db(env, "MOCKINGBIRD_DB")
    return parse_db(DEFAULT_DB)
