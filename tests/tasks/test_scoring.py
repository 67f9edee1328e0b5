"""Exact match per kind and bootstrap intervals."""

from __future__ import annotations

import pytest

from tasks.scoring import accuracy, bootstrap_ci, exact_match, normalize_text


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


def test_bootstrap_interval():
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)
    assert bootstrap_ci([]) == (0.0, 0.0)
    flags = [True] * 6 + [False] * 14
    lo, hi = bootstrap_ci(flags)
    assert lo < accuracy(flags) == 0.3 < hi
    assert bootstrap_ci(flags) == (lo, hi)  # seeded: reproducible
    wide = bootstrap_ci(flags[:5] + flags[-5:])
    assert wide[1] - wide[0] > hi - lo  # fewer items, wider interval
