"""Tabular tasks: CSV, JSONL and Parquet tables of features and a label, as Mockingbird tasks.

A table becomes one ``tabular`` task per split: a seeded draw of ``k_shot`` demonstrations
(stratified by class for classification) and the other rows as test queries. What is decided
here, once per table:

* **the label column**: ``label_column`` if given, else a column named ``label``, ``target``,
  ``class`` or ``y`` (any case), else the last column;
* **the task type** (``MockFunction.target_type``): ``regression`` for a numeric label with more
  than :data:`MAX_INTEGER_CLASSES` distinct values or any non-integer value, else
  ``classification``; ``task_type`` overrides it;
* **feature types**: a column is numeric (``int`` / ``float``) when every present value is a
  number, else categorical (``str``; booleans stay ``bool``); missing cells (empty, ``NA``,
  ``NaN``, ``null``, ``None``, ``?``, JSON ``null``, Parquet nulls) become ``None``;
* **the role-play function**: ``predict_<label>(<feature>: <type>, ...) -> <type>`` with a
  docstring from a sidecar description (``<file>.md`` / ``<file>.txt``, or ``<stem>.md`` /
  ``<stem>.txt`` beside the table) or else from the file name.

Every mistake in a table is a :class:`~tasks.errors.TaskFileError`: one line naming the file and
what is wrong (missing label column, a label with one value, an empty or ragged file, a file too
large for memory).

Example::

    from tasks.tabular import TaskSplit, load_table_task
    task = load_table_task("iris.csv", TaskSplit(k_shot=16, seed=3))
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tasks.errors import TaskFileError

logger = logging.getLogger(__name__)

TargetType = Literal["classification", "regression"]
#: File extensions of tables.
TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")
#: Column names taken as the label when no ``label_column`` is given (case-insensitive).
LABEL_COLUMNS = ("label", "target", "class", "y")
#: A numeric label with at most this many distinct integer values is a class label.
MAX_INTEGER_CLASSES = 10
#: Cells read as missing in CSV files (after stripping, case-insensitive).
MISSING_CELLS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
#: Parsed rows take roughly this many times the file's size in memory (Python objects).
MEMORY_FACTOR = 12


def available_memory() -> int:
    """Bytes of memory available to this process now (``MemAvailable``; a guess where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def file_size(path: Path) -> int:
    """The size in bytes of the task file ``path``, checked before reading it.

    Raises:
        TaskFileError: The file is missing, not a file, or cannot be read.
    """
    if not path.exists():
        raise TaskFileError(path, None, "no such file")
    if not path.is_file():
        raise TaskFileError(path, None, "not a file")
    try:
        return path.stat().st_size
    except OSError as exc:
        raise TaskFileError(path, None, f"cannot read: {exc.strerror}") from None


def read_task_text(path: Path, encoding: str = "utf-8") -> str:
    """The text of the task file ``path``; every way reading it fails is one :class:`TaskFileError`.

    Raises:
        TaskFileError: The file is not UTF-8 text, cannot be read, or holds only white space.
    """
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError:
        raise TaskFileError(path, None, "not UTF-8 text") from None
    except OSError as exc:
        raise TaskFileError(path, None, f"cannot read: {exc.strerror}") from None
    if not text.strip():
        raise TaskFileError(path, None, "empty file")
    return text


def _check_size(path: Path) -> None:
    size = file_size(path)
    if size == 0:
        raise TaskFileError(path, None, "empty file")
    free = available_memory()
    if size * MEMORY_FACTOR > free:
        raise TaskFileError(
            path,
            None,
            f"file too large for memory ({size / 2**20:.0f} MiB on disk needs about "
            f"{size * MEMORY_FACTOR / 2**20:.0f} MiB parsed; {free / 2**20:.0f} MiB available): "
            "sample it to fewer rows first",
        )


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_CELLS


def _number(text: str) -> int | float | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# --- reading -------------------------------------------------------------------------------------


def _read_csv(path: Path) -> tuple[list[str], list[list[Any]]]:
    text = read_task_text(path, "utf-8-sig")
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text.splitlines(), dialect)
    try:
        header = [h.strip() for h in next(reader)]
        body = list(reader)
    except csv.Error as exc:
        raise TaskFileError(path, None, f"invalid CSV: {exc}") from None
    rows = []
    for i, cells in enumerate(body, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise TaskFileError(
                path, f"line {i}", f"has {len(cells)} cells, the header has {len(header)} (ragged file)"
            )
        rows.append([None if _missing(c) else c for c in cells])
    return header, rows


def _read_jsonl(path: Path) -> tuple[list[str], list[list[Any]]]:
    text = read_task_text(path)
    header: list[str] | None = None
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFileError(path, f"line {i}", f"invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise TaskFileError(path, f"line {i}", "invalid JSON: nested too deeply") from None
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise TaskFileError(path, f"line {i}", f"invalid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise TaskFileError(path, f"line {i}", "expected a JSON object")
        if header is None:
            header = list(row)
        elif set(row) != set(header):
            raise TaskFileError(
                path, f"line {i}", f"has keys {sorted(row)}, line 1 has {sorted(header)} (ragged file)"
            )
        for key, value in row.items():
            if isinstance(value, (list, dict)):
                raise TaskFileError(
                    path, f"line {i}", f"{key}: values must be scalars, got a {type(value).__name__}"
                )
        rows.append([None if _missing(row[h]) else row[h] for h in header])
    return header or [], rows


def _read_parquet(path: Path) -> tuple[list[str], list[list[Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TaskFileError(path, None, "reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise TaskFileError(path, None, f"invalid Parquet: {str(exc).splitlines()[0]}") from None
    header = list(table.column_names)
    columns = [table.column(h).to_pylist() for h in header]
    rows = []
    for values in zip(*columns, strict=True):
        for h, v in zip(header, values, strict=True):
            if isinstance(v, (list, dict, bytes)):
                raise TaskFileError(path, h, f"values must be scalars, got a {type(v).__name__}")
        rows.append([None if _missing(v) else _plain(v) for v in values])
    return header, rows


def _plain(value: Any) -> Any:
    """A Parquet value as a JSON scalar (dates and decimals as text)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def read_table(path: str | Path) -> tuple[list[str], list[list[Any]]]:
    """The header and the rows of a table file (missing cells as ``None``).

    Raises:
        TaskFileError: A missing, empty, ragged, malformed or too large file, or repeated columns.
    """
    path = Path(path)
    _check_size(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, rows = _read_csv(path)
    elif suffix == ".jsonl":
        header, rows = _read_jsonl(path)
    elif suffix == ".parquet":
        header, rows = _read_parquet(path)
    else:
        raise TaskFileError(path, None, f"not a table ({', '.join(TABLE_SUFFIXES)})")
    if not header or any(not str(h).strip() for h in header) or len(set(header)) != len(header):
        raise TaskFileError(path, "header", "column names must be unique and non-empty")
    if not rows:
        raise TaskFileError(path, None, "no data rows")
    return header, rows


# --- columns -------------------------------------------------------------------------------------


@dataclass
class Column:
    """One column's values (``None`` = missing) and its type: ``int``, ``float``, ``bool`` or ``str``."""

    name: str
    values: list[Any]
    type: str

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "float")


def typed_column(name: str, raw: list[Any]) -> Column:
    """Infer a column's type and convert its values (text cells of a numeric column to numbers)."""
    present = [v for v in raw if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return Column(name, list(raw), "bool")
    numbers: list[int | float] = []
    for v in present:
        n = None if isinstance(v, bool) else (v if isinstance(v, (int, float)) else _number(str(v)))
        if n is None:
            return Column(name, [None if v is None else str(v).strip() for v in raw], "str")
        numbers.append(n)
    if not numbers:
        return Column(name, list(raw), "float")  # every value missing
    it = iter(numbers)
    converted = [None if v is None else next(it) for v in raw]
    if all(isinstance(n, int) for n in numbers):
        return Column(name, converted, "int")
    return Column(name, [None if v is None else float(v) for v in converted], "float")


def find_label(path: Path, header: list[str], label_column: str | None) -> str:
    """The label column: the one named, else a conventional name, else the last column."""
    if label_column:
        if label_column not in header:
            raise TaskFileError(
                path, "columns", f"no label column {label_column!r}; columns are {', '.join(header)}"
            )
        return label_column
    lower = {h.lower(): h for h in header}
    for name in LABEL_COLUMNS:
        if name in lower:
            return lower[name]
    return header[-1]


def decide_target_type(labels: list[Any], override: str | None = None) -> TargetType:
    """``classification`` or ``regression`` from the label values (``override`` wins)."""
    if override in ("classification", "regression"):
        return override  # type: ignore[return-value]
    if override not in (None, "", "auto"):
        raise ValueError(f"task type must be auto, classification or regression, got {override!r}")
    if any(isinstance(v, (bool, str)) for v in labels):
        return "classification"
    if all(float(v).is_integer() for v in labels) and len(set(labels)) <= MAX_INTEGER_CLASSES:
        return "classification"
    return "regression"


# --- splits --------------------------------------------------------------------------------------


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def stratified_split(
    labels: list[Any], k: int, seed: int, *, stratify: bool = True
) -> tuple[list[int], list[int]]:
    """Row indices of ``k`` demonstrations and of the queries (the rest), drawn with ``seed``.

    With ``stratify`` every class gets a share of the demonstrations proportional to its size
    (largest remainders), at least one each while ``k`` allows; with fewer slots than classes,
    ``k`` classes drawn at random get one each. Demonstrations and queries come back shuffled.
    """
    rng = random.Random(seed)
    order = list(range(len(labels)))
    rng.shuffle(order)
    if not stratify:
        return order[:k], order[k:]
    by_class: dict[str, list[int]] = defaultdict(list)
    for i in order:
        by_class[_key(labels[i])].append(i)
    classes = sorted(by_class)
    n = len(labels)
    if k < len(classes):
        picked = rng.sample(classes, k)
        quota = {c: int(c in picked) for c in classes}
    else:
        exact = {c: k * len(by_class[c]) / n for c in classes}
        quota = {c: max(1, min(len(by_class[c]), int(exact[c]))) for c in classes}
        # fill up by the largest remainders (then the largest classes), never beyond a class's size
        while sum(quota.values()) < k:
            room = [c for c in classes if quota[c] < len(by_class[c])]
            best = max(room, key=lambda c: (exact[c] - quota[c], len(by_class[c]), c))
            quota[best] += 1
        while sum(quota.values()) > k:  # the at-least-one rule overshot: trim the largest quotas
            worst = max((c for c in classes if quota[c] > 1), key=lambda c: (quota[c] - exact[c], c))
            quota[worst] -= 1
    demos = [i for c in classes for i in by_class[c][: quota[c]]]
    rng.shuffle(demos)
    chosen = set(demos)
    return demos, [i for i in order if i not in chosen]


# --- the task ------------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[^0-9a-zA-Z_]+")


def identifier(name: str) -> str:
    """A Python-style identifier for a column or file name (``sepal length (cm)`` → ``sepal_length_cm``)."""
    ident = _IDENTIFIER.sub("_", name.strip()).strip("_").lower() or "x"
    return f"_{ident}" if ident[0].isdigit() else ident


def sidecar_description(path: Path) -> str | None:
    """The text of ``<file>.md``/``.txt`` or ``<stem>.md``/``.txt`` beside a table, if one exists."""
    for candidate in (
        path.with_name(path.name + ".md"),
        path.with_name(path.name + ".txt"),
        path.with_suffix(".md"),
        path.with_suffix(".txt"),
    ):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text
    return None


def _signature(
    name: str, columns: list[Column], label: Column, target_type: TargetType, classes: list[Any]
) -> str:
    args = ", ".join(f"{c.name}: {c.type}" for c in columns)
    if target_type == "regression":
        returns = "float"
    elif classes and len(classes) <= 12:
        returns = "Literal[" + ", ".join(json.dumps(c) for c in classes) + "]"
    else:
        returns = label.type
    return f"{name}({args}) -> {returns}"


@dataclass(frozen=True, kw_only=True)
class TaskSplit:
    """How a file becomes a task: which examples are demonstrations and which are queries, and,
    for a table, what is predicted. One value travels from the command line to every loader."""

    k_shot: int = 3
    """Demonstrations (tables and BIG-Bench Hard; the other examples are queries)."""
    seed: int = 0
    """Seed of a table's split: each seed draws other demonstrations."""
    queries: int | None = None
    """Tables: at most this many test queries (the rest of the rows otherwise)."""
    label_column: str | None = None
    """Tables: the label column (default: see the module docstring)."""
    task_type: str | None = None
    """Tables: ``auto`` (or ``None``), ``classification`` or ``regression``."""
    tolerance: float | None = None
    """Tables, regression: answers within this many label standard deviations count as right."""
    stratify: bool = True
    """Tables, classification: draw the demonstrations stratified by class (else uniformly)."""


#: The split of a loader called without one.
DEFAULT_SPLIT = TaskSplit()


def load_table_task(path: str | Path, split: TaskSplit = DEFAULT_SPLIT) -> dict[str, Any]:
    """A table file as one task (a dict ready for :class:`tasks.schema.Task`).

    Args:
        path: A ``.csv``, ``.jsonl`` or ``.parquet`` file.
        split: Its demonstrations and queries, and what is predicted.

    Raises:
        TaskFileError: One line naming the file and what is wrong.
    """
    path = Path(path)
    header, rows = read_table(path)
    label_name = find_label(path, header, split.label_column)
    features = [h for h in header if h != label_name]
    if not features:
        raise TaskFileError(path, "columns", "no feature columns besides the label")
    li = header.index(label_name)
    kept = [r for r in rows if r[li] is not None]
    if len(kept) < len(rows):
        logger.info("%s: %d rows without a label left out", path, len(rows) - len(kept))
    if not kept:
        raise TaskFileError(path, label_name, "the label column has no values")
    columns = [typed_column(h, [r[header.index(h)] for r in kept]) for h in features]
    label = typed_column(label_name, [r[li] for r in kept])
    distinct = {_key(v) for v in label.values}
    if len(distinct) < 2:
        raise TaskFileError(
            path, label_name, f"the label has a single value ({label.values[0]!r}): nothing to predict"
        )
    try:
        target_type = decide_target_type(label.values, split.task_type)
    except ValueError as exc:
        raise TaskFileError(path, "task_type", str(exc)) from None
    if target_type == "regression" and not label.numeric:
        raise TaskFileError(path, label_name, f"a regression label must be numeric, got {label.type} values")
    if len(kept) <= split.k_shot:
        raise TaskFileError(
            path, None, f"{len(kept)} labelled rows leave no test query after {split.k_shot} shots"
        )
    demo_idx, query_idx = stratified_split(
        label.values, split.k_shot, split.seed, stratify=split.stratify and target_type == "classification"
    )
    if split.queries is not None:
        query_idx = query_idx[: split.queries]

    def row(i: int) -> dict[str, Any]:
        return {c.name: c.values[i] for c in columns}

    def out(i: int) -> Any:
        value = label.values[i]
        return float(value) if target_type == "regression" else value

    classes = (
        sorted({_key(label.values[i]) for i in range(len(kept))}) if target_type == "classification" else []
    )
    class_values = [json.loads(c) for c in classes]
    name = f"predict_{identifier(label_name)}"
    description = sidecar_description(path)
    what = f"the class '{label_name}'" if target_type == "classification" else f"the number '{label_name}'"
    docstring = (description + "\n\n" if description else f"A row of the table '{path.stem}'. ") + (
        f"Predicts {what} from the row's other columns (None = missing)."
    )
    return {
        "id": path.stem,
        "kind": "tabular",
        "type": path.stem,
        "function": {
            "name": name,
            "signature": _signature(name, columns, label, target_type, class_values),
            "docstring": docstring,
            "target_type": target_type,
            "tolerance": split.tolerance,
        },
        "train": [{"input": row(i), "output": out(i)} for i in demo_idx],
        "test": [{"input": row(i), "target": out(i)} for i in query_idx],
    }


def class_counts(labels: list[Any]) -> Counter[str]:
    """How many rows each label has (keys as JSON), for reports and tests."""
    return Counter(_key(v) for v in labels)
