"""Comparing strategies in one benchmark run: the oracle router, the router's standing, the plot.

``python -m graph.bench --strategy all`` runs every fixed strategy the backend supports and the
router (``auto``) on the same queries; this module turns those runs into the comparison the
README reports: accuracy against compute per strategy, the **oracle** (each query answered by
its cheapest correct strategy in hindsight: the ceiling of any router), and how the router
stands against the best fixed strategy (accuracy difference, compute ratio, share of the oracle).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel

logger = logging.getLogger(__name__)

#: Fixed strategies in ``--strategy all``, cheapest first; ``ttt`` only where the backend adapts.
ALL_FIXED: tuple[str, ...] = ("icl", "select", "reflect", "ttt")


def expand_strategies(requested: list[str], *, can_adapt: bool) -> list[str]:
    """``all`` becomes every fixed strategy the backend supports plus ``auto``; others pass through."""
    out: list[str] = []
    for s in requested:
        if s == "all":
            out += [x for x in ALL_FIXED if x != "ttt" or can_adapt] + ["auto"]
        else:
            out.append(s)
    return list(dict.fromkeys(out))  # keep order, drop repeats


class Point(BaseModel):
    """One strategy's place on the accuracy-compute plane."""

    label: str
    accuracy: float
    ci_low: float
    ci_high: float
    seconds_per_query: float
    tokens_per_query: float


class RouterStanding(BaseModel):
    """How the router compares with the best fixed strategy and the oracle (same queries)."""

    best_fixed: str
    best_accuracy: float
    router_accuracy: float
    accuracy_gap: float  # router minus best fixed, in accuracy points (0-1)
    compute_ratio: float  # router seconds per query / best fixed seconds per query
    oracle_accuracy: float
    share_of_oracle: float  # router accuracy / oracle accuracy
    meets_target: bool  # within 2 points of the best fixed at <= 40 % of its compute


class Calibration(BaseModel):
    """Whether a strategy's confidence means something: how often a sure answer is wrong."""

    threshold: float  # the router's stop threshold (--confidence-threshold)
    queries: int
    confident: int  # answers with confidence >= threshold
    confident_wrong: int  # ... of which wrong
    wrong_rate: float | None  # confident_wrong / confident (None when nothing was confident)
    very_sure_wrong: int  # wrong answers at confidence >= 0.9
    mean_conf_correct: float | None  # mean confidence of the right answers
    mean_conf_wrong: float | None  # ... and of the wrong ones (should be lower)


def calibration(results: list[Any], threshold: float) -> Calibration:
    """How often an answer at or above ``threshold`` was wrong (results need ``confidence``, ``correct``).

    Queries without a score (no target) are left out. The router stops escalating at the
    threshold, so a high ``wrong_rate`` means it stops on answers it should not trust.
    """
    scored = [r for r in results if r.correct is not None]
    sure = [r for r in scored if r.confidence >= threshold]
    right = [r.confidence for r in scored if r.correct]
    wrong = [r.confidence for r in scored if not r.correct]
    return Calibration(
        threshold=threshold,
        queries=len(scored),
        confident=len(sure),
        confident_wrong=sum(1 for r in sure if not r.correct),
        wrong_rate=round(sum(1 for r in sure if not r.correct) / len(sure), 4) if sure else None,
        very_sure_wrong=sum(1 for c in wrong if c >= 0.9),
        mean_conf_correct=round(sum(right) / len(right), 4) if right else None,
        mean_conf_wrong=round(sum(wrong) / len(wrong), 4) if wrong else None,
    )


def oracle(results_by_strategy: dict[str, list[Any]]) -> Point:
    """Each query answered by its cheapest correct fixed strategy (or the cheapest, when none is).

    Args:
        results_by_strategy: strategy -> per-query results (``correct``, ``seconds``, ``tokens``),
            all in the same query order.
    """
    from tasks.scoring import proportion_ci

    runs = list(results_by_strategy.values())
    if not runs:
        raise ValueError("the oracle needs at least one fixed strategy")
    n = len(runs[0])
    flags, seconds, tokens = [], 0.0, 0.0
    for i in range(n):
        per_query = [run[i] for run in runs]
        right = [r for r in per_query if r.correct]
        pick = min(right or per_query, key=lambda r: r.seconds)
        flags.append(bool(right))
        seconds += pick.seconds
        tokens += pick.tokens
    lo, hi = proportion_ci(flags)
    return Point(
        label="oracle",
        accuracy=sum(flags) / max(n, 1),
        ci_low=lo,
        ci_high=hi,
        seconds_per_query=seconds / max(n, 1),
        tokens_per_query=tokens / max(n, 1),
    )


def standing(points: dict[str, Point], router: Point, best_oracle: Point) -> RouterStanding:
    """The router against the most accurate fixed strategy (the cheaper one on a tie)."""
    best_name, best = max(points.items(), key=lambda kv: (kv[1].accuracy, -kv[1].seconds_per_query))
    gap = router.accuracy - best.accuracy
    ratio = router.seconds_per_query / best.seconds_per_query if best.seconds_per_query else float("inf")
    return RouterStanding(
        best_fixed=best_name,
        best_accuracy=best.accuracy,
        router_accuracy=router.accuracy,
        accuracy_gap=round(gap, 4),
        compute_ratio=round(ratio, 4),
        oracle_accuracy=best_oracle.accuracy,
        share_of_oracle=round(router.accuracy / best_oracle.accuracy, 4) if best_oracle.accuracy else 0.0,
        meets_target=gap >= -0.02 and ratio <= 0.4,
    )


def plot(points: list[Point], path: Path, title: str) -> Path:
    """Accuracy (with its 95 % interval) against seconds per query, one labelled point each.

    Raises:
        SettingsError: matplotlib is not installed (``pip install -e ".[plot]"``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: write the file only
        import matplotlib.pyplot as plt
    except ImportError:
        from graph.errors import SettingsError

        raise SettingsError(f"--plot {path}: needs matplotlib (pip install -e '.[plot]')") from None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    placed: list[tuple[float, float]] = []
    for p in points:
        x = max(p.seconds_per_query, 1e-3)  # a log axis has no 0
        lo, hi = (p.accuracy - p.ci_low) * 100, (p.ci_high - p.accuracy) * 100
        ax.errorbar(x, p.accuracy * 100, yerr=[[lo], [hi]], fmt="o", capsize=3)
        # labels of points close together are stacked downwards instead of printed over each other
        near = sum(1 for px, py in placed if abs(math.log10(x / px)) < 0.3 and abs(p.accuracy * 100 - py) < 4)
        placed.append((x, p.accuracy * 100))
        ax.annotate(p.label, (x, p.accuracy * 100), textcoords="offset points", xytext=(6, 4 - 11 * near))
    ax.set_xscale("log")
    ticks = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(ticks)
    low, high = ax.get_xlim()
    if high / low < 10:  # within one decade the minor ticks carry the numbers; across decades they crowd
        ax.xaxis.set_minor_formatter(ticks)
        ax.tick_params(axis="x", which="minor", labelsize=7)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("seconds per query (log)")
    ax.set_ylabel("exact match, % (95 % CI)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path
