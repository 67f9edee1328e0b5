"""The compact serialization the embedded model reads and writes.

A tiny model trained from scratch cannot read prose, so it gets the demonstrations and the query
only, one character per cell::

    I0033300O0000333\n      <- a demonstration: "I" input "O" output, newline
    I0505000O                <- the query; the model writes the output and a newline

Grids write each row as digits, rows separated by ``/``; lists as comma-separated items; text as
is (newlines become spaces); tabular inputs as ``name=value`` pairs separated by ``;``. The role-play
description and notes are not part of this format: the embedded model was never trained on prose.
The training script (``models/train.py``) uses exactly these functions, so what the model sees at
inference is what it saw in training.
"""

from __future__ import annotations

import json
import string
from typing import Any

from models.base import PromptParts, RenderedPrompt
from tasks.schema import TaskKind

INPUT_MARK = "I"
OUTPUT_MARK = "O"
END = "\n"
ROW_SEP = "/"


def _clean(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


#: Index letters of the indexed variant (no I and O: they mark inputs and outputs).
INDEX_CHARS = "".join(ch for ch in string.ascii_letters if ch not in "IO")


def _row(row: list[int], indexed: bool) -> str:
    if not indexed:
        return "".join(str(c) for c in row)
    return "".join(f"{INDEX_CHARS[i % len(INDEX_CHARS)]}{c}" for i, c in enumerate(row))


def encode_value(value: Any, kind: TaskKind, indexed: bool = False) -> str:
    """Serialize one value of ``kind`` in the compact format (grids ``indexed`` if asked)."""
    if kind == "grid":
        return ROW_SEP.join(_row(row, indexed) for row in value)
    if kind == "list":
        # JSON for non-strings so booleans and numbers read back as what they were
        return ",".join(_clean(v if isinstance(v, str) else json.dumps(v)) for v in value)
    if kind == "tabular" and isinstance(value, dict):
        return ";".join(f"{_clean(str(k))}={_clean(str(v))}" for k, v in value.items())
    return _clean(str(value))


def decode_value(text: str, kind: TaskKind, indexed: bool = False) -> Any | None:
    """Parse a compact answer; ``None`` when it is not a valid value of ``kind``."""
    text = text.split(END, 1)[0].strip()
    if kind == "grid":
        rows = text.split(ROW_SEP)
        if indexed:  # the colours are the digits; index letters only guide copying
            rows = ["".join(ch for ch in r if ch.isdigit()) if r.strip(INDEX_CHARS) else "" for r in rows]
        if not text or any(not r or not r.isdigit() for r in rows):
            return None
        if len({len(r) for r in rows}) != 1:
            return None
        return [[int(c) for c in r] for r in rows]
    if kind == "list":
        if not text:
            return []
        return [_scalar(item) for item in text.split(",")]
    return text if text else None


def _scalar(item: str) -> Any:
    """Read a list item back as the JSON scalar it most likely was."""
    try:
        return json.loads(item)
    except ValueError:
        return item


def encode_pair(inp: Any, out: Any, kind: TaskKind, indexed: bool = False) -> str:
    """One demonstration line."""
    return (
        f"{INPUT_MARK}{encode_value(inp, kind, indexed)}{OUTPUT_MARK}{encode_value(out, kind, indexed)}{END}"
    )


def encode_query(inp: Any, kind: TaskKind, indexed: bool = False) -> str:
    """The query line, open for the model to complete."""
    return f"{INPUT_MARK}{encode_value(inp, kind, indexed)}{OUTPUT_MARK}"


class CompactRenderer:
    """Renders prompts for the embedded model (and other models trained on this format)."""

    name = "compact"

    def __init__(self, *, indexed: bool = False) -> None:
        self.indexed = indexed

    def render(self, parts: PromptParts) -> RenderedPrompt:
        """Demonstrations then the open query; generation stops at the newline."""
        text = "".join(encode_pair(d.input, d.output, parts.kind, self.indexed) for d in parts.demos)
        text += encode_query(parts.query, parts.kind, self.indexed)
        max_new = max(8, len(encode_value(parts.query, parts.kind, self.indexed)) * 3 + 8)
        return RenderedPrompt(text=text, stop=[END], max_new_tokens=max_new)

    def parse(self, text: str, kind: TaskKind) -> Any | None:
        """See :func:`decode_value`."""
        return decode_value(text, kind, self.indexed)

    def format_value(self, value: Any, kind: TaskKind) -> str:
        """An answer as the model would write it, newline included."""
        return encode_value(value, kind, self.indexed) + END
