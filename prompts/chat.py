"""The role-play prompt for chat models (Mockingbird-style) and a forgiving answer parser.

The model is told it *is* the function: its name, signature and docstring go into the system
message; the user message lists domain notes, the demonstrations as ``Input: <json>`` /
``Output: <json>`` pairs and the query, ending in an open ``Output:``. The wording lives in the
text templates next to this module (``roleplay_*.txt``, ``string.Template`` placeholders: JSON is
full of braces, which ``str.format`` would trip over).

Values are written as compact JSON for grids, lists and tabular inputs; text values and tabular
labels are written as plain one-line text, so that what a model copies from the examples is what
:meth:`ChatRenderer.parse` reads back.
"""

from __future__ import annotations

import json
import logging
import re
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from prompts.base import ChatMessage, PromptParts, RenderedPrompt
from tasks.schema import TaskKind, check_value

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent
OUTPUT_MARK = "Output:"
INPUT_MARK = "Input:"

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*$")
_DIGIT_ROW = re.compile(r"^\s*\[?\s*\d(?:\s*[,\s]\s*\d)*\s*\]?\s*,?\s*$")


@cache
def load_template(name: str) -> Template:
    """Load ``prompts/<name>.txt`` as a :class:`string.Template`.

    Args:
        name: Template name without the extension, e.g. ``"roleplay_system"``.

    Raises:
        FileNotFoundError: If the template does not exist.
    """
    return Template((TEMPLATE_DIR / f"{name}.txt").read_text(encoding="utf-8"))


def _one_line(text: str) -> str:
    """Collapse newlines: every value must fit on its ``Input:``/``Output:`` line."""
    return " ".join(text.replace("\r", "\n").split("\n")).strip()


def encode_value(value: Any, kind: TaskKind) -> str:
    """Write one value the way the role-play prompt shows it.

    Args:
        value: An input or output value.
        kind: The task kind.

    Returns:
        Compact JSON for grids, lists and mappings; a table row as ``name=value, ...`` (the
        role-play function's keyword arguments; ``None`` = missing); plain one-line text for strings
        and scalars of text or tabular tasks.
    """
    if kind == "tabular" and isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if kind in ("grid", "list") or isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, str):
        return _one_line(value)
    return json.dumps(value)


def _cell(value: Any) -> str:
    """One table cell: numbers and None as Python writes them, text as a one-line repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return repr(_one_line(str(value)))


class ChatRenderer:
    """Renders Mockingbird's role-play prompt as chat messages and parses answers back."""

    name = "chat"

    def render(self, parts: PromptParts) -> RenderedPrompt:
        """Build the system and user messages.

        Args:
            parts: Function description, notes, demonstrations and query.

        Returns:
            Two chat messages; no stop strings (chat models end their turn themselves) and a token
            budget proportional to the size of the values.
        """
        fields = _fields(parts)
        system = load_template("roleplay_system").substitute(
            name=fields["name"], signature=fields["signature"], docstring_block=fields["docstring_block"]
        )
        user = load_template("roleplay_user").substitute(
            notes_block=fields["notes_block"],
            demos_block=fields["demos_block"],
            query=encode_value(parts.query, parts.kind),
        )
        # Room for an answer a few times the size of the largest value seen, in (roughly) tokens.
        sizes = [len(encode_value(parts.query, parts.kind))]
        sizes += [len(encode_value(d.output, parts.kind)) for d in parts.demos]
        max_new = min(4096, max(64, 2 * max(sizes) + 32))
        return RenderedPrompt(
            messages=[
                ChatMessage(role="system", content=system.strip() + "\n"),
                ChatMessage(role="user", content=user.rstrip()),
            ],
            max_new_tokens=max_new,
        )

    def parse(self, text: str, kind: TaskKind, parts: PromptParts | None = None) -> Any | None:
        """Extract the answer from a completion.

        The answer is read after the last ``Output:`` that yields a valid value (models sometimes
        echo the prompt), with code fences removed. Grids and lists are parsed as JSON; a bare row
        of digits (``0 0 3 3``) or a flat list (``[0,0,3]``) is accepted as a 1xN grid. Text and
        tabular answers are the first non-empty line.

        Args:
            text: The model's completion.
            kind: The task kind.
            parts: The prompt's parts: a regression table's answer is read as a number.

        Returns:
            The value, validated with :func:`tasks.schema.check_value`, or ``None``.
        """
        if not text:
            return None
        pieces = text.split(OUTPUT_MARK)
        # After each "Output:", last first; then the whole text if there was no marker.
        segments = [p.split(INPUT_MARK, 1)[0] for p in reversed(pieces[1:])] or [text]
        for segment in segments:
            value = _parse_segment(_strip_fences(segment), kind)
            if value is not None:
                if kind == "tabular" and parts is not None and parts.function.target_type == "regression":
                    from tasks.scoring import as_number  # a regression answer is a number

                    return as_number(value)
                return value
        return None

    def format_value(self, value: Any, kind: TaskKind, parts: PromptParts | None = None) -> str:
        """An answer as the model is asked to write it (used to score candidates)."""
        return encode_value(value, kind)


def _fields(parts: PromptParts) -> dict[str, str]:
    """The template fields every chat prompt shares: the function, the notes and the demonstrations."""
    fn = parts.function
    docstring_block = (
        load_template("roleplay_docstring").substitute(docstring=fn.docstring.strip())
        if fn.docstring.strip()
        else "\n"
    )
    notes_block = (
        load_template("roleplay_notes").substitute(notes="\n".join(f"- {_one_line(n)}" for n in parts.notes))
        + "\n"
        if parts.notes
        else ""
    )
    demo = load_template("roleplay_demo")
    demos_block = "\n".join(
        demo.substitute(input=encode_value(d.input, parts.kind), output=encode_value(d.output, parts.kind))
        for d in parts.demos
    )
    return {
        "name": fn.name,
        "signature": fn.signature,
        "docstring_block": docstring_block,
        "notes_block": notes_block,
        "demos_block": demos_block,
    }


def render_reflection(parts: PromptParts, mistakes: list[tuple[Any, Any, Any]]) -> RenderedPrompt:
    """The reflection prompt (``reflect.txt``): the model reads its mistakes and writes one note.

    Args:
        parts: Function, current notes and the demonstrations (``parts.query`` is not shown).
        mistakes: ``(input, wrong answer or raw text, right output)`` per wrong prediction.

    Returns:
        One user message; the reply is a short note (a sentence or two).
    """
    kind = parts.kind
    blocks = [
        f"{INPUT_MARK} {encode_value(inp, parts.kind)}\n"
        f"Your prediction: {_one_line(wrong) if isinstance(wrong, str) else encode_value(wrong, kind)}\n"
        f"Correct output: {encode_value(out, parts.kind)}"
        for inp, wrong, out in mistakes
    ]
    user = load_template("reflect").substitute(**_fields(parts), mistakes_block="\n\n".join(blocks))
    return RenderedPrompt(messages=[ChatMessage(role="user", content=user.strip())], max_new_tokens=160)


#: Letters naming the options of the multiple-choice selection prompt.
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def render_selection(parts: PromptParts, options: list[Any]) -> RenderedPrompt:
    """The multiple-choice selection prompt (``select.txt``): pick the right candidate output.

    Args:
        parts: Function, notes, demonstrations and the query.
        options: Candidate outputs (at most 26), shown as ``(A) <value>``.

    Returns:
        One user message; the reply names a letter (see :func:`parse_choice`).

    Raises:
        ValueError: With more than 26 options.
    """
    if len(options) > len(OPTION_LETTERS):
        raise ValueError(f"at most {len(OPTION_LETTERS)} options, got {len(options)}")
    options_block = "\n".join(
        f"({OPTION_LETTERS[i]}) {encode_value(v, parts.kind)}" for i, v in enumerate(options)
    )
    user = load_template("select").substitute(
        **_fields(parts), query=encode_value(parts.query, parts.kind), options_block=options_block
    )
    return RenderedPrompt(messages=[ChatMessage(role="user", content=user.strip())], max_new_tokens=16)


_CHOICE_PATTERNS = (
    re.compile(r"\(([A-Z])\)"),  # "(B)"
    re.compile(r"\b(?i:answer|option|candidate|choice)\s*(?:is\s*)?:?\s*\(?([A-Z])\b"),
    re.compile(r"^\W*([A-Z])\W*$"),  # a bare letter, maybe with punctuation
    re.compile(r"^\s*([A-Z])[\).:]"),  # "B) ...", "B. ...", "B: ..."
)


def parse_choice(text: str, options: list[Any], kind: TaskKind) -> int | None:
    """The option a selection reply names, as an index into ``options``; ``None`` if unclear.

    Reads, in order: a parenthesised letter, "answer/option B", a bare letter, a leading
    "B)"; then, if the model wrote a value instead of a letter, the one option whose value it is.
    """
    text = (text or "").strip()
    if not text:
        return None
    for pattern in _CHOICE_PATTERNS:
        found = {m.upper() for m in pattern.findall(text)} & set(OPTION_LETTERS[: len(options)])
        if len(found) == 1:
            return OPTION_LETTERS.index(found.pop())
        if len(found) > 1:
            return None  # the reply names several options: no choice
    value = ChatRenderer().parse(text, kind)
    matches = [i for i, v in enumerate(options) if v is not None and v == value]
    return matches[0] if len(matches) == 1 else None


def _strip_fences(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not _FENCE.match(line))


def _parse_segment(text: str, kind: TaskKind) -> Any | None:
    text = text.strip()
    if not text:
        return None
    if kind in ("text", "tabular"):
        line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        if len(line) >= 2 and line[0] == line[-1] == '"':
            try:  # the model JSON-quoted a plain answer
                decoded = json.loads(line)
            except ValueError:
                decoded = None
            if isinstance(decoded, str):
                line = decoded
        return line or None
    value = _parse_json_like(text, kind)
    if value is None:
        return None
    if kind == "grid" and isinstance(value, list) and value and not any(isinstance(v, list) for v in value):
        value = [value]  # a flat row means a 1xN grid
    try:
        return check_value(kind, value, "answer")
    except ValueError as exc:
        logger.debug("rejected answer: %s", exc)
        return None


def _parse_json_like(text: str, kind: TaskKind) -> Any | None:
    try:
        return json.loads(text)
    except ValueError:
        pass
    array = _first_array(text)
    if array is not None:
        return array
    if kind == "grid":
        rows = []
        for line in text.splitlines():
            if not line.strip():
                continue
            if not _DIGIT_ROW.match(line):
                break
            rows.append([int(ch) for ch in line if ch.isdigit()])
        return rows or None
    # A list written without brackets: "1, 2, 3".
    first_line = text.splitlines()[0]
    try:
        return json.loads(f"[{first_line}]")
    except ValueError:
        return None


def _first_array(text: str) -> Any | None:
    """The first balanced ``[...]`` in ``text`` that is valid JSON, if any."""
    start = text.find("[")
    while start != -1:
        depth = 0
        for i in range(start, len(text)):
            if text[i] == "[":
                depth += 1
            elif text[i] == "]":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(text[start : i + 1])
                    except ValueError:
                        break
        start = text.find("[", start + 1)
    return None
