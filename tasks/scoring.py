"""Exact-match scoring per task kind, and confidence intervals for accuracies (Wilson score)."""

from __future__ import annotations

import math
import re
from statistics import NormalDist
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


def proportion_ci(flags: list[bool], *, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of the share of true ``flags`` (``1 - alpha`` coverage).

    Unlike a percentile bootstrap it never collapses at the edges: 0 of 5 gives [0, 0.43], not
    [0, 0]. With no flags the interval is [0, 1] (nothing is known).
    """
    n = len(flags)
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = sum(flags) / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact at the edges (the formula gives 0 and 1 there up to rounding)
    lo = 0.0 if p == 0 else max(0.0, centre - half)
    hi = 1.0 if p == 1 else min(1.0, centre + half)
    return (lo, hi)


def bootstrap_ci(
    flags: list[bool], *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """The old name of :func:`proportion_ci` (a Wilson interval now; ``n_boot``/``seed`` unused)."""
    return proportion_ci(flags, alpha=alpha)


#: Default tolerance of regression answers, in standard deviations of the demonstrations' labels.
DEFAULT_TOLERANCE = 0.25


def as_number(value: Any) -> float | None:
    """A predicted or target value as a finite float (``None`` when it is not a number)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = normalize_text(str(value)).replace(",", "")
        match = re.search(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", text)
        if match is None:
            return None
        number = float(match.group())
    return number if number == number and abs(number) != float("inf") else None


def label_scale(outputs: list[Any]) -> float:
    """The spread of regression labels: their standard deviation (1.0 when it is 0 or unknown)."""
    values = [v for v in (as_number(o) for o in outputs) if v is not None]
    if len(values) < 2:
        return 1.0
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return std if std > 0 else 1.0


def within_tolerance(predicted: Any, target: Any, tolerance: float, scale: float = 1.0) -> bool:
    """Whether a numeric answer is within ``tolerance x scale`` of the target."""
    p, t = as_number(predicted), as_number(target)
    if p is None or t is None:
        return False
    return abs(p - t) <= tolerance * scale + 1e-12


def is_regression(task: Any) -> bool:
    """Whether a task (a :class:`~tasks.schema.Task` or its dict) predicts a number."""
    if isinstance(task, dict):
        return (
            task.get("kind") == "tabular" and (task.get("function") or {}).get("target_type") == "regression"
        )
    return task.kind == "tabular" and task.function.target_type == "regression"


def is_correct(task: Any, predicted: Any, target: Any) -> bool:
    """Whether an answer counts as right for ``task``: exact match, or for regression, within the
    function's ``tolerance`` (default :data:`DEFAULT_TOLERANCE`) standard deviations of the task's
    demonstration labels.

    Args:
        task: A :class:`~tasks.schema.Task` or its dict (graph state holds dicts).
        predicted: The answer.
        target: The expected output.
    """
    if isinstance(task, dict):
        kind = task["kind"]
        outputs = [e["output"] for e in task.get("train", [])]
        tolerance = (task.get("function") or {}).get("tolerance")
    else:
        kind, outputs, tolerance = task.kind, [e.output for e in task.train], task.function.tolerance
    if is_regression(task):
        tol = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
        return within_tolerance(predicted, target, tol, label_scale(outputs))
    return exact_match(kind, predicted, target)


def regression_metrics(predicted: list[float], targets: list[float]) -> dict[str, float]:
    """Mean absolute error and R² (1 - residual / total sum of squares) of numeric predictions."""
    if not targets or len(predicted) != len(targets):
        raise ValueError("regression metrics need as many predictions as targets, at least one")
    n = len(targets)
    mae = sum(abs(p - t) for p, t in zip(predicted, targets, strict=True)) / n
    mean = sum(targets) / n
    total = sum((t - mean) ** 2 for t in targets)
    residual = sum((p - t) ** 2 for p, t in zip(predicted, targets, strict=True))
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0)
    return {"mae": mae, "r2": r2}
