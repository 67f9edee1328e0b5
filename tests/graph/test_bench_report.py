"""The oracle, the router's standing and the accuracy-cost plot, on hand-made results."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from graph.bench_report import Point, expand_strategies, oracle, plot, standing


def _r(correct, seconds, tokens=0):
    return SimpleNamespace(correct=correct, seconds=seconds, tokens=tokens)


def test_all_expands_to_what_the_backend_supports_plus_the_router():
    assert expand_strategies(["all"], can_adapt=True) == ["icl", "select", "reflect", "ttt", "auto"]
    assert expand_strategies(["all"], can_adapt=False) == ["icl", "select", "reflect", "auto"]
    assert expand_strategies(["icl", "all"], can_adapt=False) == ["icl", "select", "reflect", "auto"]


def test_oracle_takes_the_cheapest_correct_strategy_per_query():
    runs = {
        "icl": [_r(True, 1.0, 10), _r(False, 1.0, 10), _r(False, 1.0, 10)],
        "ttt": [_r(True, 9.0, 40), _r(True, 9.0, 40), _r(False, 9.0, 40)],
    }
    o = oracle(runs)
    assert o.accuracy == pytest.approx(2 / 3)
    # query 1: icl (1 s), query 2: ttt (9 s), query 3: nobody right, the cheapest (1 s)
    assert o.seconds_per_query == pytest.approx((1 + 9 + 1) / 3)
    assert o.tokens_per_query == pytest.approx((10 + 40 + 10) / 3)


def _p(label, acc, sec):
    return Point(
        label=label, accuracy=acc, ci_low=acc, ci_high=acc, seconds_per_query=sec, tokens_per_query=0
    )


def test_standing_against_the_best_fixed_strategy():
    fixed = {"icl": _p("icl", 0.2, 0.1), "ttt": _p("ttt", 0.5, 10.0)}
    s = standing(fixed, _p("auto", 0.49, 3.0), _p("oracle", 0.6, 4.0))
    assert s.best_fixed == "ttt" and s.accuracy_gap == pytest.approx(-0.01)
    assert s.compute_ratio == pytest.approx(0.3) and s.meets_target
    assert s.share_of_oracle == pytest.approx(0.49 / 0.6, abs=1e-4)
    assert not standing(fixed, _p("auto", 0.45, 3.0), _p("oracle", 0.6, 4.0)).meets_target  # 5 points short
    assert not standing(fixed, _p("auto", 0.5, 5.0), _p("oracle", 0.6, 4.0)).meets_target  # 50 % of compute


@pytest.mark.required_in_ci("matplotlib (the test extra)")
def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = plot([_p("icl", 0.2, 0.1), _p("ttt", 0.5, 10.0), _p("oracle", 0.6, 4.0)], tmp_path / "p.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_calibration_counts_sure_answers_that_were_wrong():
    from graph.bench_report import calibration

    def r(correct, confidence):
        return SimpleNamespace(correct=correct, confidence=confidence)

    results = [r(True, 1.0), r(False, 0.95), r(False, 0.7), r(False, 0.2), r(True, 0.5), r(None, 1.0)]
    c = calibration(results, 0.6)
    assert (c.queries, c.confident, c.confident_wrong) == (5, 3, 2)
    assert c.wrong_rate == pytest.approx(2 / 3, abs=1e-4)
    assert c.very_sure_wrong == 1
    assert c.mean_conf_correct == pytest.approx(0.75)
    assert c.mean_conf_wrong == pytest.approx((0.95 + 0.7 + 0.2) / 3, abs=1e-4)
    empty = calibration([r(False, 0.1)], 0.6)
    assert empty.wrong_rate is None and empty.mean_conf_correct is None
