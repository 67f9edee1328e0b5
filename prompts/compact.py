"""The compact serialization the embedded model reads and writes.

A tiny model trained from scratch cannot read prose, so it gets the demonstrations and the query
only, one character per cell::

    I0033300O0000333\n      <- a demonstration: "I" input "O" output, newline
    I0505000O                <- the query; the model writes the output and a newline

Grids write each row as digits, rows separated by ``/``; lists as comma-separated items; text as
is (newlines become spaces). Tables get their own one-character-per-cell format with symbols fitted
on the prompt's demonstrations (:mod:`prompts.tabular`); :func:`encode_value` still writes a row as
``name=value`` pairs separated by ``;`` where no demonstrations are at hand. The role-play
description and prose notes are not part of this format: the embedded model was never trained on
prose. The training script (``models/train.py``) uses exactly these functions, so what the model
sees at inference is what it saw in training.

One kind of note does reach the compact prompt: a *correction* (:func:`correction_note`), which
reflection writes for models that cannot write prose (the input, the right output and the wrong
answer the model gave). The renderer shows each correction as one more demonstration line, placed
after the task's demonstrations, nearest the query: the format the model was trained on, so a
prompt without corrections is byte-for-byte what it was before.
"""

from __future__ import annotations

import json
import string
from typing import Any

from prompts.base import PromptParts, RenderedPrompt
from prompts.tabular import BINS, TableCodec, encode_table
from tasks.schema import TaskKind, check_value

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


#: How a correction note starts; the rest is JSON, so it reads as prose and parses back exactly.
CORRECTION_PREFIX = "Correction: input "
_GIVES = " gives "
_NOT = ", not "


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def correction_note(inp: Any, output: Any, wrong: Any = None) -> str:
    """A note recording a mistake: ``Correction: input [[0,1]] gives [[1,0]], not [[0,0]]``.

    Args:
        inp: The input the model got wrong.
        output: The right output.
        wrong: What the model answered (its raw text when unparseable); omitted when ``None``.

    Returns:
        One line of prose a chat model can read; :func:`parse_correction` reads it back exactly.
    """
    note = f"{CORRECTION_PREFIX}{_json(inp)}{_GIVES}{_json(output)}"
    return note + (f"{_NOT}{_json(wrong)}" if wrong is not None else "")


def parse_correction(note: str) -> tuple[Any, Any] | None:
    """The ``(input, output)`` of a correction note; ``None`` for any other note."""
    if not note.startswith(CORRECTION_PREFIX):
        return None
    decoder = json.JSONDecoder()
    try:
        inp, end = decoder.raw_decode(note, len(CORRECTION_PREFIX))
        if not note.startswith(_GIVES, end):
            return None
        output, end = decoder.raw_decode(note, end + len(_GIVES))
    except ValueError:
        return None
    if end != len(note) and not note.startswith(_NOT, end):
        return None
    return inp, output


def corrections(notes: list[str], kind: TaskKind) -> list[tuple[Any, Any]]:
    """The corrections among ``notes`` whose values are valid for ``kind`` (others are skipped)."""
    pairs = []
    for note in notes:
        pair = parse_correction(note)
        if pair is None:
            continue
        try:  # a note from another task kind must not break rendering
            check_value(kind, pair[0], "correction.input")
            check_value(kind, pair[1], "correction.output")
        except ValueError:
            continue
        if kind == "tabular" and not isinstance(pair[0], dict):
            continue
        pairs.append(pair)
    return pairs


def encode_query(inp: Any, kind: TaskKind, indexed: bool = False) -> str:
    """The query line, open for the model to complete."""
    return f"{INPUT_MARK}{encode_value(inp, kind, indexed)}{OUTPUT_MARK}"


class CompactRenderer:
    """Renders prompts for the embedded model (and other models trained on this format)."""

    name = "compact"

    def __init__(self, *, indexed: bool = False) -> None:
        self.indexed = indexed

    def render(self, parts: PromptParts) -> RenderedPrompt:
        """Demonstrations, corrections from the notes, then the open query; stops at the newline."""
        pairs = [(d.input, d.output) for d in parts.demos] + corrections(parts.notes, parts.kind)
        if parts.kind == "tabular" and isinstance(parts.query, dict):
            regression = _regression(parts)
            text, _ = encode_table(pairs, parts.query, regression=regression)
            # a symbol and the newline; a regression label's digits are its deciles, in order
            digits = [str(d) for d in range(BINS)] if regression else []
            return RenderedPrompt(text=text, stop=[END], max_new_tokens=2, ordinal=digits)
        text = "".join(encode_pair(i, o, parts.kind, self.indexed) for i, o in pairs)
        text += encode_query(parts.query, parts.kind, self.indexed)
        max_new = max(8, len(encode_value(parts.query, parts.kind, self.indexed)) * 3 + 8)
        return RenderedPrompt(text=text, stop=[END], max_new_tokens=max_new)

    def parse(self, text: str, kind: TaskKind, parts: PromptParts | None = None) -> Any | None:
        """See :func:`decode_value`; a table's label symbol decodes with the prompt's ``parts``."""
        codec = _table_codec(parts) if kind == "tabular" else None
        if codec is not None:
            return codec.decode_label(text)
        return decode_value(text, kind, self.indexed)

    def format_value(self, value: Any, kind: TaskKind, parts: PromptParts | None = None) -> str:
        """An answer as the model would write it, newline included (a table's label as its symbol)."""
        codec = _table_codec(parts) if kind == "tabular" else None
        if codec is not None:
            return codec.encode_label(value) + END
        return encode_value(value, kind, self.indexed) + END


def _regression(parts: PromptParts) -> bool:
    return parts.function.target_type == "regression"


def _table_codec(parts: PromptParts | None) -> TableCodec | None:
    """The symbols of a table prompt, fitted as :meth:`CompactRenderer.render` fits them."""
    if parts is None or parts.kind != "tabular" or not isinstance(parts.query, dict):
        return None
    pairs = [(d.input, d.output) for d in parts.demos] + corrections(parts.notes, parts.kind)
    return TableCodec.fit(
        [r for r, _ in pairs], [y for _, y in pairs], regression=_regression(parts), columns=list(parts.query)
    )
