"""Process-level settings shared by the CLIs: ``.env`` loading and storage paths.

Per-run knobs live in :class:`graph.context.Context`; this module only holds what is about the
process (where the database is, where the bundled tasks are).
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import load_dotenv

#: Bundled example tasks (the default of ``python -m graph.run``).
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "tasks" / "examples"
#: Default SQLite database for checkpoints and long-term task memory.
DEFAULT_DB = Path(".mockingbird") / "mockingbird.sqlite"


def load_dotenv_file(path: Path | None = None) -> None:
    """Load ``.env`` (from the working directory by default); real environment variables win."""
    load_dotenv(path or Path.cwd() / ".env", override=False)
    # Strict checkpoint deserialization unless the user explicitly chose otherwise (NOTES: Security).
    os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")


def db_path(override: str | None = None) -> Path:
    """The checkpoint/store database: flag > ``MOCKINGBIRD_DB`` > ``.mockingbird/mockingbird.sqlite``."""
    return Path(override or os.environ.get("MOCKINGBIRD_DB") or DEFAULT_DB)
