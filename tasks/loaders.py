"""Task loaders: ARC/1D-ARC JSON, BIG-Bench Hard JSON, tables (CSV/JSONL/Parquet) and the project's own JSON.

Every malformed input raises :class:`~tasks.errors.TaskFileError` with one line naming the file,
the field and what is wrong; nothing else escapes for a bad file.

Example::

    from tasks.loaders import load_any
    tasks = load_any("../shared/benchmarks/1d-arc")        # 450 tasks, type = sub-folder
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tasks.errors import TaskFileError, first_error
from tasks.schema import MockFunction, Task
from tasks.tabular import DEFAULT_SPLIT, TABLE_SUFFIXES, TaskSplit, file_size, load_table_task, read_task_text

#: File extensions the loaders understand.
SUPPORTED = (".json", *TABLE_SUFFIXES)
FORMATS_HELP = (
    "ARC JSON {train, test}, BIG-Bench Hard JSON {examples}, task JSON {id, kind, function}, "
    "CSV, JSONL or Parquet tables"
)
#: Largest task file read (bytes). Checked before reading, so a huge file costs no memory; a task
#: is a few demonstrations and queries (1D-ARC and ARC files are under 100 kB). Tables have their
#: own limit (against the memory available: ``tasks.tabular``).
MAX_TASK_FILE_BYTES = 32 * 1024 * 1024

ARC_FUNCTION = MockFunction(
    name="transform",
    signature="transform(grid: list[list[int]]) -> list[list[int]]",
    docstring=(
        "Transforms a grid of colours 0-9 (0 is usually the background) by one fixed rule, "
        "the same rule in every example."
    ),
)
BBH_DOCSTRING = "Answers the question; the answer's format follows the examples exactly."


def _build(path: Path, data: dict[str, Any], root: str = "") -> Task:
    """``data`` as a task of the file ``path`` (``root``: where it sits in the file, if not alone)."""
    try:
        return Task.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        err = first_error(exc)
        raise TaskFileError(path, err.where(root) or "task", err.message) from None


def _read_text(path: Path) -> str:
    size = file_size(path)
    if size > MAX_TASK_FILE_BYTES:
        mib, limit = size / 2**20, MAX_TASK_FILE_BYTES // 2**20
        raise TaskFileError(path, None, f"file is {mib:.1f} MiB, over the {limit} MiB limit of task files")
    return read_task_text(path)


def _parse_json(path: Path, text: str, field: str | None = None) -> Any:
    """``json.loads`` with every way it fails as one :class:`TaskFileError` line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = "" if field else f" at line {exc.lineno}, column {exc.colno}"
        raise TaskFileError(path, field, f"invalid JSON: {exc.msg}{where}") from None
    except RecursionError:
        raise TaskFileError(path, field, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise TaskFileError(path, field, f"invalid JSON: {exc}") from None


def _read_json(path: Path) -> Any:
    return _parse_json(path, _read_text(path))


def _arc(path: Path, data: dict[str, Any]) -> Task:
    for key in ("train", "test"):
        if not isinstance(data.get(key), list):
            raise TaskFileError(path, key, "missing or not a list")
    train, test = [], []
    for i, pair in enumerate(data["train"]):
        if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
            raise TaskFileError(path, f"train[{i}]", "expected an object with 'input' and 'output'")
        train.append({"input": pair["input"], "output": pair["output"]})
    for i, pair in enumerate(data["test"]):
        if not isinstance(pair, dict) or "input" not in pair:
            raise TaskFileError(path, f"test[{i}]", "expected an object with 'input'")
        test.append({"input": pair["input"], "target": pair.get("output")})
    return _build(
        path,
        {
            "id": path.stem,
            "kind": "grid",
            "type": path.parent.name or None,
            "function": ARC_FUNCTION.model_dump(),
            "train": train,
            "test": test,
        },
    )


def _bbh(path: Path, data: dict[str, Any], k_shot: int) -> Task:
    examples = data["examples"]
    if not isinstance(examples, list) or not examples:
        raise TaskFileError(path, "examples", "missing, empty or not a list")
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str) or "target" not in ex:
            raise TaskFileError(
                path, f"examples[{i}]", "expected an object with a string 'input' and a 'target'"
            )
    if len(examples) <= k_shot:
        raise TaskFileError(
            path, "examples", f"{len(examples)} examples leave no test query after {k_shot} shots"
        )
    train = [{"input": e["input"], "output": str(e["target"])} for e in examples[:k_shot]]
    test = [{"input": e["input"], "target": str(e["target"])} for e in examples[k_shot:]]
    name = path.stem
    return _build(
        path,
        {
            "id": name,
            "kind": "text",
            "type": name,
            "train": train,
            "test": test,
            "function": {
                "name": name,
                "signature": f"{name}(question: str) -> str",
                "docstring": BBH_DOCSTRING,
            },
        },
    )


def _native(path: Path, data: Any) -> list[Task]:
    items = data["tasks"] if isinstance(data, dict) and "tasks" in data else data
    if isinstance(items, dict):
        return [_build(path, items)]
    if not isinstance(items, list) or not items:
        raise TaskFileError(path, "tasks", "expected a task object or a non-empty list of tasks")
    tasks = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TaskFileError(path, f"tasks[{i}]", "expected a task object")
        tasks.append(_build(path, item, root=f"tasks[{i}]"))
    return tasks


def load_tasks(path: str | Path, split: TaskSplit = DEFAULT_SPLIT) -> list[Task]:
    """Load the task(s) in one file, detecting the format from its extension and keys.

    Args:
        path: The file.
        split: Demonstrations taken from BIG-Bench Hard and tabular files (the rest are queries),
            and how a table is split and what of it is predicted.

    Raises:
        TaskFileError: One line naming the file, the field and the problem.
    """
    path = Path(path)
    if split.k_shot < 1:
        raise TaskFileError(path, "k_shot", f"must be at least 1, got {split.k_shot}")
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return [_build(path, load_table_task(path, split))]
    if suffix != ".json":
        if not path.exists():
            raise TaskFileError(path, None, "no such file")
        raise TaskFileError(path, None, f"unknown format '{suffix or path.name}'; supported: {FORMATS_HELP}")
    data = _read_json(path)
    if isinstance(data, dict) and "examples" in data:
        return [_bbh(path, data, split.k_shot)]
    if isinstance(data, dict) and ("kind" in data or "function" in data or "tasks" in data):
        return _native(path, data)
    if isinstance(data, list):
        return _native(path, data)
    if isinstance(data, dict) and ("train" in data or "test" in data):
        return [_arc(path, data)]
    raise TaskFileError(path, None, f"unknown format; supported: {FORMATS_HELP}")


def load_task_dir(directory: str | Path, split: TaskSplit = DEFAULT_SPLIT) -> list[Task]:
    """Every task file under ``directory`` (recursively, sorted); sub-folders name task types."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TaskFileError(directory, None, "not a folder")
    tasks: list[Task] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED):
        for task in load_tasks(path, split):
            if task.type is None and path.parent != directory:
                task = task.model_copy(update={"type": path.parent.relative_to(directory).as_posix()})
            tasks.append(task)
    if not tasks:
        raise TaskFileError(directory, None, f"no task files ({', '.join(SUPPORTED)}) found")
    return tasks


def load_any(path: str | Path, split: TaskSplit = DEFAULT_SPLIT) -> list[Task]:
    """A file or a folder of task files."""
    path = Path(path)
    return load_task_dir(path, split) if path.is_dir() else load_tasks(path, split)
