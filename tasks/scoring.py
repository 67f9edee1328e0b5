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
