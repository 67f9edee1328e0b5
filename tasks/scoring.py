"""Exact-match scoring per task kind, and bootstrap confidence intervals for accuracies."""

from __future__ import annotations

import random
import re
from typing import Any

from tasks.schema import TaskKind


def normalize_text(text: str) -> str:
    """Strip, casefold, collapse whitespace, drop surrounding quotes and one trailing period."""
    text = " ".join(str(text).split()).casefold()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    if text.endswith(".") and not re.search(r"\d\.$", text[-2:]):
        text = text[:-1].rstrip()
    return text


def _normalize_scalar(value: Any) -> Any:
    """Numbers as floats ("1", 1 and 1.0 agree); other values as normalised text."""
    if isinstance(value, bool):
        return normalize_text(str(value))
    if isinstance(value, (int, float)):
        return float(value)
    text = normalize_text(str(value))
    try:
        return float(text)
    except ValueError:
        return text


def exact_match(kind: TaskKind, predicted: Any, target: Any) -> bool:
    """Whether ``predicted`` is exactly the ``target`` for a task of ``kind``."""
    if predicted is None:
        return False
    if kind == "grid":
        return predicted == target
    if kind == "list":
        if not isinstance(predicted, list) or not isinstance(target, list) or len(predicted) != len(target):
            return False
        return all(
            _normalize_scalar(p) == _normalize_scalar(t) for p, t in zip(predicted, target, strict=True)
        )
    if kind == "tabular":
        return _normalize_scalar(predicted) == _normalize_scalar(target)
    return normalize_text(str(predicted)) == normalize_text(str(target))


def accuracy(flags: list[bool]) -> float:
    """Share of true flags (0.0 for none)."""
    return sum(flags) / len(flags) if flags else 0.0


def bootstrap_ci(
    flags: list[bool], *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy, resampling items with replacement."""
    if not flags:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(flags)
    values = [int(f) for f in flags]
    stats = sorted(sum(rng.choices(values, k=n)) / n for _ in range(n_boot))
    lo = stats[int((alpha / 2) * (n_boot - 1))]
    hi = stats[int((1 - alpha / 2) * (n_boot - 1))]
    return (lo, hi)
