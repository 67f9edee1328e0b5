"""The router's decisions on constructed evidence."""

from __future__ import annotations

import pytest

from graph.errors import SettingsError
from graph.router import (
    PRIOR_WEIGHT,
    SPREAD_PRIOR,
    RouterSettings,
    band_of,
    best_answer,
    check_strategy,
    decide,
    expected_accuracy,
    expected_cost,
    expected_gains,
    explore_bonus,
    level_weight,
    next_node,
    spread_of,
)


def test_auto_starts_with_icl_and_explicit_icl_quotes_the_history():
    assert decide(requested="auto", evidence={"demos": 3})["strategy"] == "icl"
    d = decide(requested="icl", evidence={"demos": 3, "outcomes": {"n": 4, "correct": 1}})
    assert "3 demonstrations" in d["reason"] and "1/4" in d["reason"]
    assert d["evidence"]["demos"] == 3


def test_explicit_icl_says_it_was_asked():
    assert decide(requested="icl", evidence={"demos": 0})["reason"].startswith("asked for ICL")


def test_next_node_follows_the_decision():
    assert next_node({"decision": {"strategy": "icl", "reason": "", "evidence": {}}}) == "icl"
    with pytest.raises(ValueError, match="unknown strategy"):
        next_node({"decision": {"strategy": "nope", "reason": "", "evidence": {}}})


def test_ttt_when_asked_and_the_backend_can_adapt():
    d = decide(requested="ttt", evidence={"demos": 3, "can_adapt": True, "model": "embedded"})
    assert d["strategy"] == "ttt" and "episodes of the 3 demonstrations" in d["reason"]


def test_ttt_falls_back_to_icl_without_enough_demonstrations():
    d = decide(requested="ttt", evidence={"demos": 1, "can_adapt": True, "model": "embedded"})
    assert d["strategy"] == "icl" and "fell back to ICL" in d["reason"]


def test_ttt_on_a_backend_that_cannot_adapt_is_refused_in_one_line():
    with pytest.raises(SettingsError) as err:
        decide(requested="ttt", evidence={"demos": 3, "can_adapt": False, "model": "openai:gpt-4o"})
    assert "openai:gpt-4o" in str(err.value) and "cannot adapt" in str(err.value)
    assert "\n" not in str(err.value)
    check_strategy("icl", can_adapt=False, model="openai:gpt-4o")  # ICL needs nothing special
    assert next_node({"decision": {"strategy": "ttt", "reason": "", "evidence": {}}}) == "ttt"


# --- auto: the evidence-driven router ----------------------------------------------------------


def _attempt(strategy, confidence, answer=None):
    return {"strategy": strategy, "answer": answer, "confidence": confidence, "seconds": 0.1, "tokens": 10}


LOCAL = {"demos": 4, "samples": 4, "can_adapt": True, "can_score": True, "model": "embedded",
         "icl_call_s": 0.1, "icl_call_tokens": 200}  # fmt: skip


def test_auto_starts_with_icl_and_quotes_loo_and_budget():
    d = decide(requested="auto", evidence=LOCAL | {"loo_icl": 0.25, "loo_n": 4},
               settings=RouterSettings(budget_s=60))  # fmt: skip
    assert d["strategy"] == "icl"
    assert "LOO-ICL 0.25 on 4 demos" in d["reason"] and "budget 60 s" in d["reason"]


def test_auto_stops_when_icl_is_sure_and_usually_right():
    ev = LOCAL | {"loo_icl": 1.0, "loo_n": 4}
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 1.0)])
    assert d["strategy"] == "finalize" and "no escalation needed" in d["reason"]


def test_a_confident_answer_from_a_strategy_that_fails_its_demos_escalates():
    ev = LOCAL | {"loo_icl": 0.0, "loo_n": 4}  # sure of itself, wrong on every held-out demo
    # its samples agreed: TTT's prior is a quarter there, so reflection (cheap, within the margin)
    # goes first; it reads the demonstrations ICL gets wrong
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 1.0)])
    assert d["strategy"] == "reflect"
    assert "prior of escalations from agreeing ICL samples" in d["reason"] and "LOO-ICL 0.00" in d["reason"]
    # unsure (its samples disagreed): TTT's full prior
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.5)])
    assert d["strategy"] == "ttt"
    assert "chose ttt" in d["reason"] and "(+0.25 over ICL, prior" in d["reason"]


def test_gains_are_estimated_apart_for_unsure_and_agreed_escalations():
    # TTT paid where ICL's samples disagreed and never where they agreed: each kind its own record
    ev = LOCAL | {"loo_icl": 0.0, "loo_n": 4, "model_gains": {"ttt": 0.4, "ttt@agreed": -0.1},
                  "model_gain_n": {"ttt": 20, "ttt@agreed": 20}}  # fmt: skip
    assert band_of([_attempt("icl", 0.5)], 0.6) == "unsure"
    assert band_of([_attempt("icl", 0.75)], 0.6) == "agreed"
    assert band_of([_attempt("ttt", 1.0)], 0.6) == "unsure"  # no ICL answer to agree on
    assert expected_gains(ev)["ttt"] > 0.3 > 0.0 > expected_gains(ev, "agreed")["ttt"]
    no_reflect = ev | {"gains": {"reflect": -0.1}}  # measured on this task's demonstrations
    sure = decide(requested="auto", evidence=no_reflect, attempts=[_attempt("icl", 1.0)])
    assert sure["strategy"] == "finalize"
    unsure = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.5)])
    assert unsure["strategy"] == "ttt" and "mean over this model's tasks" in unsure["reason"]


def test_measured_gains_beat_priors_and_the_cheapest_within_the_margin_wins():
    # selection measured +0.30 on this task, TTT +0.32: within the 0.05 margin, selection is cheaper
    ev = LOCAL | {"loo_icl": 0.25, "loo_n": 4, "gains": {"select": 0.30, "ttt": 0.32}}
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.25)])
    assert d["strategy"] == "select" and "measured on this task" in d["reason"]
    # a negative DG-DIFF (SELF-[IN]CORRECT's usual finding) rules selection out
    ev["gains"] = {"select": -0.1, "ttt": -0.2, "reflect": -0.05}
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.25)])
    assert d["strategy"] == "finalize" and "no strategy left expected to do better" in d["reason"]


def test_model_level_gains_fill_in_for_an_unmeasured_task():
    ev = LOCAL | {"loo_icl": 0.0, "loo_n": 4, "model_gains": {"ttt": -0.1, "reflect": 0.2}}
    acc = expected_accuracy(ev)
    assert acc["reflect"] > acc["ttt"]
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.5)])
    assert d["strategy"] == "reflect" and "mean over this model's tasks" in d["reason"]


def test_few_model_level_outcomes_are_averaged_with_the_prior():
    # one failed TTT query on another task: the prior (+0.25) still counts as PRIOR_WEIGHT queries
    base = LOCAL | {"loo_icl": 0.0, "loo_n": 4}
    icl = expected_accuracy(base)["icl"]
    one = expected_accuracy(base | {"model_gains": {"ttt": 0.0}, "model_gain_n": {"ttt": 1}})["ttt"]
    assert one == pytest.approx(icl + 0.25 * PRIOR_WEIGHT / (PRIOR_WEIGHT + 1))
    # many failures outweigh the prior
    many = expected_accuracy(base | {"model_gains": {"ttt": 0.0}, "model_gain_n": {"ttt": 96}})["ttt"]
    assert many == pytest.approx(icl + 0.25 * PRIOR_WEIGHT / 100)


def test_budget_exhaustion_stops_and_an_unaffordable_strategy_is_skipped():
    ev = LOCAL | {"loo_icl": 0.0, "loo_n": 4, "spent_s": 2.0}
    d = decide(
        requested="auto", evidence=ev, attempts=[_attempt("icl", 0.2)], settings=RouterSettings(budget_s=2)
    )
    assert d["strategy"] == "finalize" and "spent" in d["reason"]
    # 3 s left: TTT (>= 5 s) does not fit, reflection (~0.9 s) does
    d = decide(
        requested="auto", evidence=ev, attempts=[_attempt("icl", 0.2)], settings=RouterSettings(budget_s=5)
    )
    assert d["strategy"] == "reflect"
    assert expected_cost(ev)["ttt"][0] >= 5


def test_a_backend_without_adapt_never_gets_ttt():
    ev = LOCAL | {"can_adapt": False, "model": "openai:gpt-4o", "loo_icl": 0.0, "loo_n": 4}
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.1)])
    assert d["strategy"] == "reflect"
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.1), _attempt("reflect", 0.1)])
    assert d["strategy"] == "finalize" and "ttt: model openai:gpt-4o cannot adapt" in d["reason"]


def test_the_expert_is_the_last_resort_only_when_enabled():
    ev = LOCAL | {"can_adapt": False, "loo_icl": 0.0, "loo_n": 4}
    tried = [_attempt("icl", 0.1), _attempt("reflect", 0.1)]
    assert decide(requested="auto", evidence=ev, attempts=tried)["strategy"] == "finalize"
    d = decide(requested="auto", evidence=ev, attempts=tried, settings=RouterSettings(expert_review=True))
    assert d["strategy"] == "expert"
    d = decide(requested="auto", evidence=ev, attempts=[*tried, _attempt("expert", 1.0)],
               settings=RouterSettings(expert_review=True))  # fmt: skip
    assert d["strategy"] == "finalize"


def test_fixed_strategies_run_once_and_the_expert_sees_icl_candidates_first():
    assert decide(requested="select", evidence=LOCAL)["strategy"] == "select"
    assert (
        decide(requested="select", evidence=LOCAL, attempts=[_attempt("select", 0.1)])["strategy"]
        == "finalize"
    )
    assert decide(requested="expert", evidence=LOCAL)["strategy"] == "icl"
    assert decide(requested="expert", evidence=LOCAL, attempts=[_attempt("icl", 0.9)])["strategy"] == "expert"
    d = decide(requested="reflect", evidence=LOCAL | {"demos": 1})
    assert d["strategy"] == "icl" and "nothing to reflect on" in d["reason"]


def test_expected_accuracy_is_smoothed_and_counts_recorded_outcomes():
    acc = expected_accuracy({"loo_icl": 1.0, "loo_n": 3, "outcomes": {"n": 1, "correct": 0}})
    assert acc["icl"] == (3 + 0.5) / 5
    assert expected_accuracy({})["icl"] == 0.5  # nothing measured: undecided


def test_next_node_knows_every_destination():
    for s in ["icl", "select", "reflect", "ttt", "expert", "finalize"]:
        assert next_node({"decision": {"strategy": s, "reason": "", "evidence": {}}}) == s


def test_best_answer_keeps_a_well_supported_earlier_answer():
    # LOO-ICL 2/4 -> expected ICL 0.5, TTT 0.75 (prior +0.25)
    ev = LOCAL | {"loo_icl": 0.5, "loo_n": 4}
    acc = expected_accuracy(ev)
    assert acc["icl"] == pytest.approx(0.5) and acc["ttt"] == pytest.approx(0.75)
    # all ICL samples agree (1.0 x 0.5 = 0.5) vs a split TTT vote (0.5 x 0.75 = 0.375): ICL's answer stays
    attempts = [_attempt("icl", 1.0, [[1, 2]]), _attempt("ttt", 0.5, [[2, 1]])]
    i, why = best_answer(attempts, ev)
    assert i == 0 and "answer of icl (support 0.50" in why
    # a sure TTT vote (1.0 x 0.75) beats it
    i, _ = best_answer([attempts[0], _attempt("ttt", 1.0, [[2, 1]])], ev)
    assert i == 1


def test_best_answer_adds_up_agreement_between_strategies_and_the_expert_wins():
    ev = LOCAL | {"loo_icl": 0.5, "loo_n": 4}
    attempts = [
        _attempt("icl", 0.5, [[7]]),  # 0.25
        _attempt("select", 0.9, [[8]]),  # 0.45 (selection's prior gain is 0)
        _attempt("ttt", 0.3, [[7]]),  # 0.225, with ICL's 0.25: 0.475 > 0.45
    ]
    i, why = best_answer(attempts, ev)
    assert i == 2 and "answer of icl+ttt" in why
    i, why = best_answer([*attempts, _attempt("expert", 1.0, [[9]])], ev)
    assert i == 3 and why == "the expert's answer"
    # unparseable answers carry no support; an empty list has no winner
    assert best_answer([_attempt("icl", 1.0, None), _attempt("ttt", 0.2, [[1]])], ev)[0] == 1
    assert best_answer([], ev) == (-1, "")


def test_a_task_types_record_refines_the_model_level_estimate():
    base = LOCAL | {"loo_icl": 0.0, "loo_n": 4, "model_gains": {"ttt": 0.1}, "model_gain_n": {"ttt": 36}}
    base["gains"] = {"reflect": -0.1}  # measured on this task: reflection is out
    icl = expected_accuracy(base)["icl"]
    model_level = (0.25 * PRIOR_WEIGHT + 0.1 * 36) / (PRIOR_WEIGHT + 36)
    assert expected_accuracy(base)["ttt"] == pytest.approx(icl + model_level)
    # three queries of this type where TTT gained nothing pull the estimate towards 0; they are
    # among the model's 36, so the model level above them counts the other 33
    # (every one of them 0: the type's noise is the prior variance 0.25 over 1 + 3 queries, and the
    # model level counts as that noise over the spread between types, 0.0625 / 0.05 = 1.25 queries)
    typed = base | {"type_gains": {"ttt": 0.0}, "type_gain_n": {"ttt": 3}, "type_gain_sq": {"ttt": 0.0}}
    others = (0.25 * PRIOR_WEIGHT + 0.1 * 36) / (PRIOR_WEIGHT + 33)
    w = level_weight(3, 0.0, 0.0, SPREAD_PRIOR)
    assert w == pytest.approx(1.25)
    assert expected_accuracy(typed)["ttt"] == pytest.approx(icl + others * w / (w + 3))
    # ... below the margin over the answer in hand, but resting on few queries: the exploration
    # bonus (0.5 / sqrt(4 + 36) = 0.08, of which the type's record leaves 1.25 / 4.25) tries TTT again
    d = decide(requested="auto", evidence=typed, attempts=[_attempt("icl", 0.2)])
    assert d["strategy"] == "ttt" and "+0.02 exploration bonus" in d["reason"]
    # on 400 of the model's queries and 40 of the type's, the same means settle it: not worth TTT
    settled = typed | {"model_gain_n": {"ttt": 400}, "type_gain_n": {"ttt": 40}}
    # the bonus is the model level's, diluted as the type's own record dilutes that level
    w = level_weight(40, 0.0, 0.0, SPREAD_PRIOR)
    share = w / (w + 40)
    assert explore_bonus("ttt", settled) == pytest.approx(share * 0.5 / (PRIOR_WEIGHT + 400) ** 0.5)
    d = decide(requested="auto", evidence=settled, attempts=[_attempt("icl", 0.2)])
    assert d["strategy"] == "finalize" and "better by the 0.05 margin" in d["reason"]
    # while tasks of a type where TTT paid raise it, and the reason says where the gain comes from
    paid = base | {"type_gains": {"ttt": 0.5}, "type_gain_n": {"ttt": 3}}
    d = decide(requested="auto", evidence=paid, attempts=[_attempt("icl", 0.2)])
    assert d["strategy"] == "ttt" and "this task type's record" in d["reason"]


def test_where_ttt_never_pays_on_a_type_the_router_stops_after_a_few_of_its_tasks():
    # TTT gained +0.1 a query on 30 queries of other types; on this type it gains nothing. The
    # exploration bonus is diluted with the model-level estimate, so the type's zero record wins
    # (undiluted, the bonus kept TTT above the margin on 6 of 6 held-out tasks where it never paid)
    def after(k: int) -> str:
        ev = LOCAL | {"loo_icl": 0.0, "loo_n": 4, "gains": {"reflect": -0.1}}
        ev |= {"model_gains": {"ttt": 3.0 / (30 + k)}, "model_gain_n": {"ttt": 30 + k}}
        if k:
            ev |= {"type_gains": {"ttt": 0.0}, "type_gain_n": {"ttt": k}, "type_gain_sq": {"ttt": 0.0}}
        return decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.2)])["strategy"]

    runs = [after(k) for k in range(12)]
    stop = runs.index("finalize")
    assert runs[:2] == ["ttt", "ttt"]  # one or two unlucky queries do not switch it off ...
    assert stop <= 4 and set(runs[stop:]) == {"finalize"}  # ... a few zero-gain ones do, for good


def test_a_gain_smaller_than_the_margin_is_not_worth_escalating():
    ev = LOCAL | {"loo_icl": 0.0, "loo_n": 4, "gains": {"select": 0.03, "reflect": 0.04, "ttt": -0.1}}
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.2)])
    assert d["strategy"] == "finalize"
    d = decide(
        requested="auto", evidence=ev, attempts=[_attempt("icl", 0.2)], settings=RouterSettings(margin=0.02)
    )
    assert d["strategy"] == "select"  # both pass the 0.02 bar; selection is the cheaper of the two within it


def test_a_tasks_recorded_outcomes_are_averaged_with_the_estimate_above_them():
    # One escalated query of this task where TTT gained nothing must not switch TTT off for the
    # rest of the task (it did on tables: the router then stopped after ICL on 746 of 750 queries).
    base = LOCAL | {"loo_icl": 0.5, "loo_n": 4, "type_gains": {"ttt": 0.2}, "type_gain_n": {"ttt": 40}}
    icl = expected_accuracy(base)["icl"]
    one = base | {"gains": {"ttt": 0.0}, "gain_n": {"ttt": 1}, "gain_sq": {"ttt": 0.0}}
    upper = (0.25 * PRIOR_WEIGHT + 0.2 * 40) / (PRIOR_WEIGHT + 39)  # the prior, the type's other 39
    w = level_weight(1, 0.0, 0.0, SPREAD_PRIOR)  # 0.125 / 0.05: 2.5 queries
    assert expected_accuracy(one)["ttt"] == pytest.approx(icl + upper * w / (w + 1))
    d = decide(requested="auto", evidence=one, attempts=[_attempt("icl", 0.3)])
    assert d["strategy"] == "ttt" and "1 recorded queries of this task" in d["reason"]
    # many such queries take over
    many = base | {"type_gains": {"ttt": 0.12}, "type_gain_n": {"ttt": 100}}
    many |= {"gains": {"ttt": 0.0}, "gain_n": {"ttt": 60}, "gain_sq": {"ttt": 0.0}}  # 60 of the type's 100
    assert expected_accuracy(many)["ttt"] - icl < 0.01
    assert decide(requested="auto", evidence=many, attempts=[_attempt("icl", 0.3)])["strategy"] != "ttt"
    # a gain measured on all the demonstrations (DG-DIFF) is not averaged: it has no count
    dg = base | {"gains": {"select": 0.3}}
    assert expected_accuracy(dg)["select"] == pytest.approx(min(1.0, icl + 0.3))


def test_a_query_counts_once_however_many_levels_record_it():
    # four escalations of one task, TTT gaining nothing: they are the model's, the type's and the
    # task's record at once; counted at each level they drove TTT's gain from +0.25 to 0.03
    zeros = {"gains": {"ttt": 0.0}, "gain_n": {"ttt": 4}}
    ev = LOCAL | {"loo_icl": 0.5, "loo_n": 4, "model_gains": {"ttt": 0.0}, "model_gain_n": {"ttt": 4}}
    ev |= {"type_gains": {"ttt": 0.0}, "type_gain_n": {"ttt": 4}} | zeros
    icl = expected_accuracy(ev)["icl"]
    assert expected_accuracy(ev)["ttt"] == pytest.approx(icl + 0.25 * PRIOR_WEIGHT / (PRIOR_WEIGHT + 4))
    assert decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.3)])["strategy"] == "ttt"


def test_an_unsure_answer_escalates_even_when_icl_is_right_on_every_demonstration():
    # LOO-ICL 1.00: expected accuracy leaves TTT no room above ICL (both clip at 1), but this
    # query's answer is a coin flip and TTT's recorded gain is large: compared by gain, it escalates
    ev = LOCAL | {"loo_icl": 1.0, "loo_n": 16, "model_gains": {"ttt": 0.17}, "model_gain_n": {"ttt": 100}}
    assert expected_accuracy(ev)["ttt"] - expected_accuracy(ev)["icl"] < 0.05
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.51)])
    assert d["strategy"] == "ttt" and "+0.17 over ICL" in d["reason"]


def test_the_exploration_bonus_shrinks_with_measurement_and_never_favours_selection():
    ev = LOCAL | {"model_gains": {"ttt": 0.0, "select": 0.0}, "model_gain_n": {"ttt": 1, "select": 1}}
    assert explore_bonus("select", ev) == 0.0  # worth its cost only where measured to help
    assert explore_bonus("reflect", ev) == 0.0  # nothing measured: the prior decides
    bonuses = [explore_bonus("ttt", ev | {"model_gain_n": {"ttt": n}}) for n in (1, 20, 96, 1000)]
    assert bonuses == sorted(bonuses, reverse=True) and bonuses[0] > 0.2 and bonuses[2] == pytest.approx(0.05)
    # a gain measured on all the demonstrations is not an estimate from few queries
    assert explore_bonus("reflect", ev | {"model_gain_n": {"reflect": 3}, "gains": {"reflect": 0.1}}) == 0.0


def test_a_dear_strategy_must_pay_its_price_and_stops_sooner_where_it_never_pays():
    # held-out families as measured: TTT gains +0.29 a query over the model's tasks, nothing on
    # this type. At 30 s an adapter costs 0.10 of accuracy (worth 300 s): the router stops buying
    # it after fewer of the type's tasks than with the cost ignored, and a GPU's 3 s adapter is
    # bought as long as the gain is expected at all. Grid types differ: TTT solves one and never
    # another (the spread of true gains between types, 0.03-0.37 on the held-out suites, here 0.15)
    def after(k: int, seconds: float, worth: float) -> str:
        ev = LOCAL | {"loo_icl": 0.0, "loo_n": 4, "gains": {"reflect": -0.1}}
        ev |= {"type_spread": {"ttt": {"between": 0.15, "types": 8}}}
        ev |= {"model_gains": {"ttt": 0.29 * 30 / (30 + k)}, "model_gain_n": {"ttt": 30 + k}}
        ev |= {"costs": {"ttt": [seconds, 900.0]}}
        if k:
            ev |= {"type_gains": {"ttt": 0.0}, "type_gain_n": {"ttt": k}, "type_gain_sq": {"ttt": 0.0}}
        settings = RouterSettings(worth_s=worth)
        d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.2)], settings=settings)
        return d["strategy"]

    def stop(seconds: float, worth: float) -> int:
        runs = [after(k, seconds, worth) for k in range(20)]
        first = runs.index("finalize")
        assert set(runs[first:]) == {"finalize"}  # once stopped, for good
        return first

    dear, free, gpu = stop(30.0, 300.0), stop(30.0, 0.0), stop(3.0, 300.0)
    assert 1 <= dear <= 3  # a few tasks of the type, not one unlucky query
    assert dear < free and dear < gpu
    # the reason states the price it paid, and why it stopped
    ev = LOCAL | {"loo_icl": 0.0, "loo_n": 4, "gains": {"reflect": -0.1}, "costs": {"ttt": [30.0, 900.0]}}
    d = decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 0.2)])
    assert d["strategy"] == "ttt" and "-0.10 for its cost at 300 s a right answer" in d["reason"]
    stopped = ev | {"model_gains": {"ttt": 0.05}, "model_gain_n": {"ttt": 200}}
    d = decide(requested="auto", evidence=stopped, attempts=[_attempt("icl", 0.2)])
    assert d["strategy"] == "finalize" and "does not pay ~30.0 s" in d["reason"]
    # cost ignored (worth 0): the same evidence buys the adapter
    free = RouterSettings(worth_s=0)
    d = decide(requested="auto", evidence=stopped, attempts=[_attempt("icl", 0.2)], settings=free)
    assert d["strategy"] == "ttt"


def test_escalations_from_agreeing_icl_samples_get_no_exploration_bonus():
    # a type where TTT never paid after an agreed ICL answer, and no other record: with the bonus
    # (0.18 after one zero, 0.09 after four) the router kept training adapters on 5 of 6 such tasks
    def after(k: int) -> str:
        ev = LOCAL | {"loo_icl": 0.0, "loo_n": 3, "gains": {"reflect": -0.1}}
        if k:
            ev |= {"model_gains": {"ttt@agreed": 0.0}, "model_gain_n": {"ttt@agreed": k}}
            ev |= {"type_gains": {"ttt@agreed": 0.0}, "type_gain_n": {"ttt@agreed": k}}
            ev |= {"type_gain_sq": {"ttt@agreed": 0.0}}
        return decide(requested="auto", evidence=ev, attempts=[_attempt("icl", 1.0)])["strategy"]

    runs = [after(k) for k in range(8)]
    assert runs[0] == "ttt"  # the prior buys a trial ...
    stop = runs.index("finalize")
    assert stop <= 2 and set(runs[stop:]) == {"finalize"}  # ... and two zero-gain ones end it
    ev = LOCAL | {"model_gains": {"ttt@agreed": 0.0, "ttt": 0.0}, "model_gain_n": {"ttt@agreed": 2, "ttt": 2}}
    assert explore_bonus("ttt", ev, "agreed") == 0.0 < explore_bonus("ttt", ev)
    # where agreed escalations paid, their record alone keeps them going
    paid = LOCAL | {"loo_icl": 0.0, "loo_n": 3, "gains": {"reflect": -0.1}}
    paid |= {"model_gains": {"ttt@agreed": 0.3}, "model_gain_n": {"ttt@agreed": 10}}
    assert decide(requested="auto", evidence=paid, attempts=[_attempt("icl", 1.0)])["strategy"] == "ttt"


def test_where_types_gain_alike_a_few_unlucky_gains_do_not_switch_ttt_off_for_a_type():
    # TTT gained +0.2 a query over 100 unsure queries of this model; on this type's first four it
    # went +1 -1 -1 0. On tables every type gains about alike (the spread between types measured
    # at about 0): those four are noise, and the pooled record decides. (With fixed weights the
    # type's record took over: on iris, 17 right answers were left on 50 unsure queries.)
    ev = LOCAL | {"loo_icl": 0.9, "loo_n": 8, "gains": {"reflect": -0.1}}
    ev |= {"model_gains": {"ttt": 0.2}, "model_gain_n": {"ttt": 100}, "model_gain_sq": {"ttt": 0.4}}
    ev |= {"type_gains": {"ttt": -0.25}, "type_gain_n": {"ttt": 4}, "type_gain_sq": {"ttt": 0.75}}
    alike = ev | {"type_spread": {"ttt": {"between": -0.01, "types": 12}}}
    assert spread_of(alike, "ttt") == pytest.approx(0.05 * 4 / 16)
    d = decide(requested="auto", evidence=alike, attempts=[_attempt("icl", 0.5)])
    assert d["strategy"] == "ttt" and "this task type's record" in d["reason"]
    # where types are measured to differ (grids: an adapter solves one type and never another),
    # the same four are the type's own evidence, and it stops
    differ = ev | {"type_spread": {"ttt": {"between": 0.3, "types": 12}}}
    assert spread_of(differ, "ttt") > 4 * spread_of(alike, "ttt")
    d = decide(requested="auto", evidence=differ, attempts=[_attempt("icl", 0.5)])
    assert d["strategy"] == "finalize"
    # a type whose adapters never changed an answer (every gain 0) is believed sooner than one whose
    # gains flipped both ways to the same mean
    assert level_weight(4, 0.0, 0.0, 0.05) < level_weight(4, 0.0, 2.0, 0.05) / 3


def test_an_attempt_that_repeats_an_earlier_prompt_adds_no_support():
    # reflection kept no note, so it asked ICL's very prompt again and gave ICL's answer: counted
    # as a second opinion, the two outweighed a surer TTT answer (`sort_numbers` query 1)
    ev = LOCAL | {"loo_icl": 0.5, "loo_n": 4}
    icl, ttt = _attempt("icl", 0.75, [[0, 9, 2]]), _attempt("ttt", 0.89, [[0, 2, 9]])
    again = _attempt("reflect", 0.75, [[0, 9, 2]])
    assert best_answer([icl, again, ttt], ev)[0] == 1  # counted twice, ICL's answer (as reflect's) wins
    i, why = best_answer([icl, again | {"repeat_of": "icl"}, ttt], ev)
    assert i == 2 and "reflect (repeats icl)" in why and "answer of ttt" in why
