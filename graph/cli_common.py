"""What ``graph.run`` and ``graph.bench`` share: flags for the run's knobs and error handling."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from graph.context import STRATEGIES, Context
from graph.errors import SettingsError
from models.base import ModelConfigError, ModelError
from nodes.prepare import InvalidInputError
from tasks.errors import TaskFileError

#: User mistakes: one line on stderr, exit code 2, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    TaskFileError, ModelConfigError, SettingsError, InvalidInputError,
)  # fmt: skip


def add_context_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that override :class:`Context` fields (which fall back to ``MOCKINGBIRD_*``)."""
    parser.add_argument("--model", help="embedded (default), hf:PATH or openai:MODEL")
    parser.add_argument("--strategy", help=f"one of {', '.join(STRATEGIES)} (default auto)")
    parser.add_argument("--samples", type=int, help="samples per query (default 4)")
    parser.add_argument("--temperature", type=float, help="temperature of extra samples (default 0.7)")
    parser.add_argument(
        "--max-demos", type=int, dest="max_demos", help="demonstrations in the prompt; 0 = all"
    )
    parser.add_argument("--seed", type=int, help="sampling seed (default 0)")
    parser.add_argument(
        "--timeout", type=float, dest="timeout_s", help="seconds per model request (default 60)"
    )
    parser.add_argument(
        "--ttt-steps", type=int, dest="ttt_steps", help="test-time training steps (default 40)"
    )
    parser.add_argument("--ttt-lr", type=float, dest="ttt_lr", help="test-time training learning rate")
    parser.add_argument("--ttt-rank", type=int, dest="ttt_rank", help="test-time training LoRA rank (16)")
    parser.add_argument("--ttt-views", type=int, dest="ttt_views", help="test-time training: views voted on")
    parser.add_argument(
        "--ttt-augment",
        action=argparse.BooleanOptionalAction,
        dest="ttt_augment",
        help="test-time training over augmented views (default on)",
    )
    parser.add_argument(
        "--ttt-early-stop",
        action=argparse.BooleanOptionalAction,
        dest="ttt_early_stop",
        help="stop test-time training when a held-back demonstration stops improving (default on)",
    )
    parser.add_argument(
        "--ttt-cache", type=int, dest="ttt_cache", help="adapters cached per task id (0 = none; default 4)"
    )
    parser.add_argument("--ttt-cache-dir", dest="ttt_cache_dir", help="also cache adapters in this folder")
    parser.add_argument("--reflect-rounds", type=int, dest="reflect_rounds", help="reflection rounds (2)")
    parser.add_argument(
        "--budget", type=float, dest="budget_s", help="seconds per query for the router (0 = no limit)"
    )
    parser.add_argument(
        "--budget-tokens",
        type=int,
        dest="budget_tokens",
        help="tokens per query for the router (0 = no limit)",
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        dest="confidence_threshold",
        help="router: escalate while confidence is below this (0.6)",
    )
    parser.add_argument("--margin", type=float, help="router: accuracy margin for a cheaper strategy (0.05)")
    parser.add_argument(
        "--expert-review",
        action=argparse.BooleanOptionalAction,
        dest="expert_review",
        help="router: escalate to a human expert as the last resort (default off)",
    )
    parser.add_argument(
        "--db", help="checkpoints and task memory: a SQLite path, sqlite:///PATH or postgresql://..."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")


def context_from_args(args: argparse.Namespace, **override: Any) -> Context:
    """A Context from flags (``override`` wins; ``None`` means unset); unset fields fall back to
    the environment, then defaults."""
    names = [
        "model",
        "strategy",
        "samples",
        "temperature",
        "max_demos",
        "seed",
        "timeout_s",
        "ttt_steps",
        "ttt_lr",
        "ttt_rank",
        "ttt_views",
        "ttt_augment",
        "ttt_early_stop",
        "ttt_cache",
        "ttt_cache_dir",
        "reflect_rounds",
        "budget_s",
        "budget_tokens",
        "confidence_threshold",
        "margin",
        "expert_review",
    ]
    values = {n: getattr(args, n, None) for n in names} | override
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
