"""Exact match per kind and Wilson intervals."""

from __future__ import annotations

import pytest

from tasks.scoring import accuracy, bootstrap_ci, exact_match, normalize_text, proportion_ci


@pytest.mark.parametrize(
    ("kind", "pred", "target", "expected"),
    [
        ("grid", [[1, 2]], [[1, 2]], True),
        ("grid", [[1, 2]], [[2, 1]], False),
        ("grid", [[1, 2]], [[1, 2], [0, 0]], False),
        ("list", ["3", 1], [3, 1], True),
        ("list", [1, 2], [1, 2, 3], False),
        ("text", "  The  Answer. ", "the answer", True),
        ("text", '"(A)"', "(A)", True),
        ("text", "B", "(B)", False),
        ("tabular", "1", 1.0, True),
        ("tabular", "Setosa", "setosa", True),
        ("tabular", 2, 1, False),
        ("grid", None, [[1]], False),
    ],
)
def test_exact_match(kind, pred, target, expected):
    assert exact_match(kind, pred, target) is expected


def test_normalize_keeps_decimal_points():
    assert normalize_text("3.") == "3." and normalize_text("Yes.") == "yes"


def test_proportion_interval_is_wilson_and_never_collapses_at_the_edges():
    lo, hi = proportion_ci([False] * 5)
    assert lo == 0.0 and round(hi, 4) == 0.4345  # 0/5 is not "[0, 0]" (the old bootstrap said so)
    lo, hi = proportion_ci([True] * 10)
    assert round(lo, 4) == 0.7225 and hi == 1.0
    assert proportion_ci([]) == (0.0, 1.0)
    flags = [True] * 6 + [False] * 14
    lo, hi = proportion_ci(flags)
    assert (round(lo, 4), round(hi, 4)) == (0.1455, 0.5190)  # Wilson 95 % for 6/20, by hand
    assert lo < accuracy(flags) == 0.3 < hi
    wide = proportion_ci(flags[:5] + flags[-5:])
    assert wide[1] - wide[0] > hi - lo  # fewer items, wider interval
    assert bootstrap_ci([False] * 5) == proportion_ci([False] * 5)  # the old name, same interval
