"""What the CLIs (``graph.run``, ``graph.bench``, ``graph.review``) share: the entry point, flags
for the run's knobs and error handling."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graph.context import Context, env_name
from graph.errors import DamagedStateError, InvalidInputError, SettingsError
from graph.settings import load_dotenv_file
from models.base import ModelConfigError, ModelError
from tasks.errors import TaskFileError
from tasks.tabular import TaskSplit

#: User mistakes: one line on stderr, exit code 2, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    TaskFileError, ModelConfigError, SettingsError, InvalidInputError,
)  # fmt: skip


def flag_name(field: str) -> str:
    """The command-line flag of a :class:`Context` field (declared with the field)."""
    extra = Context.model_fields[field].json_schema_extra
    flag = extra.get("flag") if isinstance(extra, dict) else None
    return str(flag) if flag else "--" + field.replace("_", "-")


def add_context_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`Context` field, generated from its declaration (help, type, default).

    A flag left out is ``None`` (unset): the environment, then ``.env``, then the default apply.
    A flag given always wins, also when its value equals the default.
    """
    group = parser.add_argument_group("run settings (each also MOCKINGBIRD_<NAME> in the environment / .env)")
    for name, info in Context.model_fields.items():
        default = info.default
        shown = "empty" if default == "" else str(default).lower() if isinstance(default, bool) else default
        help_text = f"{info.description} (default {shown}; {env_name(name)})"
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if info.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif info.annotation in (int, float):
            kwargs["type"] = info.annotation
            kwargs["metavar"] = "N" if info.annotation is int else "X"
        else:
            kwargs["metavar"] = "TEXT"
        group.add_argument(flag_name(name), **kwargs)
    parser.add_argument(
        "--db",
        help="checkpoints and task memory: SQLite path, sqlite:///PATH or postgresql://... (MOCKINGBIRD_DB)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")


def add_table_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of tabular tasks (CSV, JSONL, Parquet files)."""
    parser.add_argument(
        "--label-column", help="label column of a table (default: label/target/class/y, else the last)"
    )
    parser.add_argument(
        "--task-type",
        choices=("auto", "classification", "regression"),
        default="auto",
        help="tables: classification or regression (default: decided by the label's values)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        help="tables, regression: an answer within this many standard deviations of the "
        "demonstrations' labels counts as right (default 0.25)",
    )
    parser.add_argument(
        "--stratify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tables, classification: draw demonstrations stratified by class (default on)",
    )


def task_split(args: argparse.Namespace, *, seed: int, queries: int | None = None) -> TaskSplit:
    """The loaders' split from ``--k-shot`` and the flags of :func:`add_table_flags` (checked)."""
    tolerance = getattr(args, "tolerance", None)
    if tolerance is not None and tolerance < 0:
        raise SettingsError(f"--tolerance: must be 0 or positive, got {tolerance}")
    return TaskSplit(
        k_shot=args.k_shot,
        seed=seed,
        queries=queries,
        label_column=getattr(args, "label_column", None),
        task_type=getattr(args, "task_type", "auto"),
        tolerance=tolerance,
        stratify=getattr(args, "stratify", True),
    )


def context_from_args(args: argparse.Namespace, **override: Any) -> Context:
    """A Context from flags (``override`` wins; ``None`` means unset); unset fields fall back to
    the environment (and ``.env``), then defaults. A given flag wins even when it equals the default."""
    values = {n: getattr(args, n, None) for n in Context.model_fields} | override
    return Context(**{n: v for n, v in values.items() if v is not None})


def parse_json_flag(raw: str | None, flag: str) -> Any:
    """A JSON-valued flag, with a one-line error naming the flag."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{flag}: not valid JSON ({exc.msg} at column {exc.colno}): {raw[:60]!r}"
        ) from None


def check_output_file(raw: str | None, flag: str) -> Path | None:
    """Where ``flag`` will write a file, checked before any work starts (``None`` when not given).

    Raises:
        SettingsError: The folder is missing or not writable, or the path is a folder.
    """
    if raw is None:
        return None
    path = Path(raw)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SettingsError(f"{flag}: {path} is a folder; give a file name")
    if not folder.is_dir():
        raise SettingsError(f"{flag}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SettingsError(f"{flag}: cannot write {path} (permission denied)")
    return path


def cli_main(
    parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int], argv: list[str] | None
) -> int:
    """A CLI's entry point: parse ``argv``, load ``.env``, set up logging (``--verbose``), then run
    ``body`` with the arguments under :func:`run_cli`; returns the exit code."""
    args = parser.parse_args(argv)
    load_dotenv_file()
    setup_logging(args.verbose)
    return run_cli(lambda: body(args))


def run_cli(main: Callable[[], int]) -> int:
    """Run a CLI body: user mistakes and model failures become one line on stderr.

    Exit codes: 0 ok, 1 a model or server failed, 2 a user mistake, 130 interrupted.
    """
    try:
        return main()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"error: model call failed: {exc}", file=sys.stderr)
        return 1
    except DamagedStateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; unfinished runs resume with the same --thread", file=sys.stderr)
        return 130


def setup_logging(verbose: bool) -> None:
    """Library modules log; the CLI decides what is shown."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "openai", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
