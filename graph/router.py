"""The router: the one place where strategy decisions live.

``decide`` is a pure function from measured evidence (and the attempts made so far for this
query) to a :class:`~graph.state.Decision`; the ``route`` node gathers the evidence, and
``next_node`` is the conditional edge that follows the decision. The graph comes back to
``route`` after every strategy, so escalation is a sequence of decisions, each in the trace.

How ``auto`` decides (see the README for the measured result):

1. **Expected accuracy** of each strategy on this task: ICL's is its leave-one-out accuracy on the
   demonstrations (measured by ``route``, Laplace-smoothed with recorded outcomes); every other
   strategy adds its *gain* over ICL, taken from the most specific evidence there is: measured on
   this task (DG-DIFF for selection, reflection gain, recorded TTT outcomes), else the mean over
   this model's other tasks averaged with a prior (:data:`PRIOR_GAIN`: selection 0, after
   SELF-[IN]CORRECT; small for reflection; large for TTT, after Akyurek et al.) that counts as
   :data:`PRIOR_WEIGHT` queries; where tasks of the same *type* were seen, their mean gain is
   averaged in, and a gain from this task's recorded outcomes in the same way, each weighed by
   empirical Bayes (:func:`level_weight`): the estimate above counts as the level's own noise
   over the measured spread between types, so a type whose gains are all alike is trusted after
   a few tasks and types that gain alike (tables) pool their records. Each
   level leaves out the queries of the level below it, so no query is counted twice. A gain
   measured on all the demonstrations (DG-DIFF, reflection's held-out gain) replaces them all.
   Recorded gains are kept apart by the kind of escalation (:data:`Band`): from an *unsure* ICL
   answer (its confidence under the threshold) or from an *agreed* one, ICL sure of its answer
   (escalated only because ICL is often wrong on the task); each kind has its own prior and
   records at every level.
2. **Expected cost** (seconds, tokens) of each strategy: measured means for this model, else
   multiples of one measured ICL call.
3. ICL goes first (it is cheap and its confidence is evidence too: its answer's probability, or
   the agreement among its samples where the model gives no log-probabilities). After each
   attempt the router stops when the answer's confidence (the lower of the attempt's own
   confidence and the strategy's expected accuracy) reaches the threshold, or the budget is
   spent; otherwise it escalates to the **cheapest untried strategy whose expected gain over ICL
   is within a margin of the best untried one**, among those expected to beat the current answer
   by at least that margin (the answer in hand is already paid for), if the budget allows. Gains
   are compared, not accuracies clipped at 1, so an unsure answer on a task whose demonstrations
   ICL all gets right can still escalate. Once measured, a strategy the literature expects to gain
   (reflection, TTT) counts here with an optimistic bonus (an upper confidence bound,
   :data:`EXPLORE_SD` / sqrt(:data:`PRIOR_WEIGHT` + queries measured for this model)), so an
   estimate resting on a few queries is tried again rather than trusted: a gain over ICL is -1, 0
   or +1 per query and mostly 0, so a few unlucky queries switched off a strategy that paid on one
   query in six (TTT on tables: +17 points where ICL was unsure). Escalations from an agreed ICL
   answer get no bonus (:func:`explore_bonus`): they rarely pay, and a few trials are what the
   prior buys. The bonus is diluted as the
   model-level estimate is, so a task type's own record (a few tasks where TTT never paid) ends
   the exploration there. Selection gets no bonus: it is
   worth its cost only where it is measured to help (SELF-[IN]CORRECT).
   Every option has a **price**: expected seconds / ``worth_s`` (the seconds of compute one more
   right answer is worth, 300 by default); its expected gain must cover it, and options are
   compared net of it. A 30 s adapter must be expected to gain more than 0.10, so where TTT stops
   paying on a task type it stops being bought after a few of its tasks, while on a GPU, where an
   adapter costs seconds, it is bought wherever it is expected to gain.
   With ``expert_review`` on, a human expert is the last resort.
4. When it stops after several strategies, the answer is not simply the last one:
   :func:`best_answer` weighs each attempt's answer by its confidence times its strategy's
   expected accuracy, summed over the attempts that agree, so an escalation that comes back
   less sure does not overwrite a well-supported earlier answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from graph.errors import SettingsError
from graph.state import Attempt, Decision, State

#: Graph nodes a decision can lead to.
Destination = Literal["icl", "select", "reflect", "ttt", "expert", "finalize"]

#: Model strategies, cheapest first (the escalation ladder).
LADDER: tuple[str, ...] = ("icl", "select", "reflect", "ttt")

#: Gain over ICL assumed before anything is measured. Selection: 0 (SELF-[IN]CORRECT: a model
#: is usually no better at picking its own candidates than at generating one); reflection: a
#: small gain (Mockingbird: reflection alone helps less than documents or experts); TTT: large
#: (up to 6x ICL in Akyurek et al.), which measured outcomes then correct per task and model.
PRIOR_GAIN: dict[str, float] = {"icl": 0.0, "select": 0.0, "reflect": 0.05, "ttt": 0.25}

#: The two kinds of escalation, whose gains are recorded and estimated apart. ``unsure``: ICL's
#: confidence was under the threshold (its answer improbable, or its samples disagreed).
#: ``agreed``: ICL was sure, and the router escalated only because ICL is often wrong on this
#: task (low leave-one-out accuracy).
#: Measured apart because they differ: on 1D-ARC and held-out families (two router runs, 83
#: queries) TTT gained +5 over 24 unsure escalations and -1 over 14 agreed ones (where the model
#: is sure of a wrong answer, an adapter trained from the same prior mostly keeps it); with a
#: later checkpoint, agreed escalations gained +3 in 8 on 1D-ARC and -2 in 8 on held-out
#: families: how each kind pays depends on the family, hence records of their own. With the
#: shipped checkpoint (step 24,600): +3 in 10 on 1D-ARC, 0 in 17 on two held-out suites.
Band = Literal["unsure", "agreed"]

#: The prior of an agreed escalation. TTT's is a quarter of its unsure prior: over the 57 agreed
#: escalations measured above it gained +3 (+0.05 a query, the margin), so its prior sits just
#: above the margin: where nothing else is known an adapter is tried on two such tasks of a type
#: and the record decides (at half, +0.125 with no exploration bonus, six zero-gain tasks were
#: needed). Reflection's is kept: it reads the demonstrations ICL gets wrong, and a confident
#: misconception is what it is for (Mockingbird).
PRIOR_GAIN_AGREED: dict[str, float] = PRIOR_GAIN | {"ttt": PRIOR_GAIN["ttt"] / 4}

#: How many queries the prior counts as when averaged with this model's measured gains: one
#: unlucky query should not switch a strategy off for every later task (nor one lucky one on).
PRIOR_WEIGHT = 4

#: How much a task type's (or a task's) own record is trusted is empirical Bayes: the estimate above
#: it counts as (the level's noise variance) / (the spread of true gains between types) queries
#: (:func:`level_weight`). Both are measured: the noise from the level's squared gains, the spread
#: between this model's types from their records (:func:`graph.memory.type_spread`). Fixed weights
#: (1 query for a type, 2 for a task) could not serve both kinds of task: on held-out grid
#: families an adapter solves one type and never another (types' gains 0 or 1, each type's
#: gains alike: trust a type after a few tasks), while on held-out synthetic tables the 24 types'
#: gains differed by no more than their noise (spread ~0.001; per-query gains +-1 at random:
#: trust the pooled record). With the fixed weights a few unlucky +-1 gains switched TTT off for a
#: table type for good, where it would have gained +0.2 a query.
#: The prior variance of one per-query gain (:data:`EXPLORE_SD` squared) counts as this many
#: queries in a level's noise estimate, so two zero gains are not taken for a noiseless type.
VAR_PRIOR_N = 1

#: The spread (variance) of true gains between task types assumed before any are measured, and how
#: many types it counts as when averaged with the measured one: on the held-out suites it was
#: 0.03-0.37 between grid types and ~0.001 between table types.
SPREAD_PRIOR = 0.05
SPREAD_PRIOR_TYPES = 4

#: The spread never drops below this: a level's own record then still counts, against at most
#: 0.25 / 0.002 = 125 queries above it.
SPREAD_FLOOR = 0.002

#: Scale of the exploration bonus: about the spread of a per-query gain over ICL (-1, 0 or +1).
#: The bonus is 0.22 after one measured query, 0.10 after 20, the 0.05 margin after 96.
EXPLORE_SD = 0.5

#: Before TTT's cost is measured for a model: a LoRA run is never cheaper than this on CPU,
#: however fast one ICL call is.
MIN_TTT_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class RouterSettings:
    """The knobs of ``auto`` (from :class:`graph.context.Context`)."""

    confidence_threshold: float = 0.6  # stop escalating once the answer is at least this sure
    margin: float = 0.05  # a cheaper strategy within this of the best expected accuracy wins
    worth_s: float = 300.0  # seconds of compute one more right answer is worth; 0 = cost ignored
    budget_s: float = 0.0  # seconds per query; 0 = no limit
    budget_tokens: int = 0  # tokens per query; 0 = no limit
    expert_review: bool = False  # a human expert as the last resort


def check_strategy(requested: str, *, can_adapt: bool, model: str) -> None:
    """Refuse, in one line, a strategy the backend cannot run (before any work is done)."""
    if requested == "ttt" and not can_adapt:
        raise SettingsError(
            f"strategy ttt: model {model!r} cannot adapt; test-time training trains a LoRA adapter, "
            "which needs a local model (embedded or hf:PATH)"
        )


def unavailable(strategy: str, evidence: dict[str, Any]) -> str | None:
    """Why ``strategy`` cannot run on this task and backend (``None`` when it can)."""
    demos = int(evidence.get("demos", 0))
    if strategy == "ttt":
        if not evidence.get("can_adapt"):
            return f"model {evidence.get('model', '?')} cannot adapt"
        if demos < 2:
            return f"{demos} demonstration(s) leave nothing to hold out"
    if strategy == "reflect" and demos < 2:
        return f"{demos} demonstration(s): nothing to reflect on"
    return None


def band_of(attempts: list[Attempt], threshold: float) -> Band:
    """The kind of escalation a query's attempts make (see :data:`Band`): ``agreed`` when ICL
    answered first with a confidence at or above ``threshold``, else ``unsure``."""
    if attempts and attempts[0]["strategy"] == "icl" and float(attempts[0]["confidence"]) >= threshold:
        return "agreed"
    return "unsure"


def gain_key(strategy: str, band: Band) -> str:
    """The key a strategy's gains are recorded under for ``band`` (``ttt``, ``ttt@agreed``)."""
    return strategy if band == "unsure" else f"{strategy}@{band}"


def expected_accuracy(evidence: dict[str, Any], band: Band = "unsure") -> dict[str, float]:
    """Expected exact-match accuracy of each model strategy on this task (see module doc)."""
    loo, n_loo = evidence.get("loo_icl"), int(evidence.get("loo_n", 0))
    outcomes = evidence.get("outcomes") or {}
    n = n_loo + int(outcomes.get("n", 0))
    hits = (loo or 0.0) * n_loo + int(outcomes.get("correct", 0))
    icl = (hits + 0.5) / (n + 1)  # smoothed: 0.5 with no evidence, never exactly 0 or 1
    return {
        s: icl if s == "icl" else min(1.0, max(0.0, icl + g))
        for s, g in expected_gains(evidence, band).items()
    }


def stop_confidence(attempt: Attempt, evidence: dict[str, Any], band: Band = "unsure") -> float:
    """How sure an attempt's answer is, as the stop rule reads it (and an ``auto`` run reports
    it): the attempt's own confidence (agreement, vote share) capped by its strategy's expected
    accuracy on this task, so a confident but usually-wrong strategy escalates and does not read
    as certain (the expert, with no expected accuracy, keeps its own)."""
    expected = expected_accuracy(evidence, band).get(attempt["strategy"], 1.0)
    return min(float(attempt["confidence"]), expected)


def expected_gains(evidence: dict[str, Any], band: Band = "unsure") -> dict[str, float]:
    """Expected gain over ICL of each model strategy on this task (ICL's is 0; see module doc).

    Not clipped to what accuracy allows: an ICL that is right on every demonstration leaves no
    room in expected accuracy, yet a query it is unsure of may still gain. ``band``: the kind of
    escalation (:data:`Band`); each has its own prior and its own records.
    """
    return {s: gain for s, (gain, _) in _estimates(evidence, band).items()}


def _estimates(evidence: dict[str, Any], band: Band = "unsure") -> dict[str, tuple[float, float]]:
    """Per strategy: its expected gain over ICL, and the share the model-level estimate (the
    prior averaged with this model's record) keeps in it once the type's and the task's own
    records are averaged in (1.0 where they have none)."""
    task_gain, task_n = evidence.get("gains") or {}, evidence.get("gain_n") or {}
    model_gain, model_n = evidence.get("model_gains") or {}, evidence.get("model_gain_n") or {}
    type_gain, type_n = evidence.get("type_gains") or {}, evidence.get("type_gain_n") or {}
    squares = [evidence.get(k) or {} for k in ("model_gain_sq", "type_gain_sq", "gain_sq")]
    out = {"icl": (0.0, 1.0)}
    prior = PRIOR_GAIN if band == "unsure" else PRIOR_GAIN_AGREED
    for strategy in LADDER[1:]:
        if strategy in task_gain and strategy not in task_n:  # measured on all the demonstrations
            out[strategy] = (float(task_gain[strategy]), 0.0)
            continue
        s = gain_key(strategy, band)  # the records of this kind of escalation
        gain = prior[strategy]
        if s in model_gain and s not in model_n:  # a bare mean (no count): taken as it is
            gain = float(model_gain[s])
        # The model's record, its type's and this task's, each averaged with the estimate above it.
        # A query counts at every level it belongs to, so each level leaves out the queries of the
        # level below: counted twice, a few zero-gain queries collapsed the estimate (TTT on tables).
        levels = ((model_gain, model_n), (type_gain, type_n), (task_gain, task_n))
        sums = [_level_sums(g, c, sq, s) for (g, c), sq in zip(levels, squares, strict=True)]
        spread = spread_of(evidence, s)
        measured = False  # until a level above is measured, the estimate is the prior's
        share = 1.0
        for i, level in enumerate(sums):
            if level is None:
                continue
            count, total, square = level
            inner = next((x for x in sums[i + 1 :] if x is not None), None)
            if inner is not None:
                count, total, square = count - inner[0], total - inner[1], square - inner[2]
            if count > 0:
                w = level_weight(count, total, square, spread) if measured else PRIOR_WEIGHT
                gain = _shrunk(gain, w, total / count, count)
                if i > 0:  # the type's or the task's own record takes this much from the levels above
                    share *= w / (w + count)
                measured = True
        out[strategy] = (float(gain), share)
    return out


def _level_sums(
    gains: dict[str, Any], counts: dict[str, Any], squares: dict[str, Any], key: str
) -> tuple[int, float, float] | None:
    """A level's record of ``key`` as sums (queries, summed gain, summed squared gain), or None.
    Squares not given (an older record) are taken as those of gains of +-1, the noisiest."""
    if key not in gains or key not in counts:
        return None
    n = int(counts[key])
    return n, float(gains[key]) * n, float(squares.get(key, 1.0)) * n


def spread_of(evidence: dict[str, Any], key: str) -> float:
    """The spread (variance) of true gains of ``key`` between this model's task types: the measured
    one (``type_spread``) averaged with :data:`SPREAD_PRIOR` counted as
    :data:`SPREAD_PRIOR_TYPES` types, at least :data:`SPREAD_FLOOR`."""
    measured = (evidence.get("type_spread") or {}).get(key) or {}
    types = int(measured.get("types", 0))
    between = max(0.0, float(measured.get("between", 0.0)))
    blended = (SPREAD_PRIOR * SPREAD_PRIOR_TYPES + between * types) / (SPREAD_PRIOR_TYPES + types)
    return max(SPREAD_FLOOR, blended)


def level_weight(n: int, total: float, squares: float, spread: float) -> float:
    """How many queries the estimate above a level (the model's above a type's, the type's above a
    task's) counts as against the level's own ``n`` recorded gains (summing to ``total``, their
    squares to ``squares``): the level's noise variance over ``spread``, the variance of true
    gains between levels (empirical Bayes). The noise is the gains' own variance with
    :data:`EXPLORE_SD` squared counted as :data:`VAR_PRIOR_N` queries: a type whose adapters never
    changed an answer (every gain 0) is trusted after a few tasks; one whose gains flip +-1 at
    random is trusted only over many."""
    mean = total / n
    noise = (VAR_PRIOR_N * EXPLORE_SD**2 + max(0.0, squares - n * mean * mean)) / (VAR_PRIOR_N + n)
    return noise / spread


def explore_bonus(strategy: str, evidence: dict[str, Any], band: Band = "unsure") -> float:
    """The optimism added to ``strategy``'s expected gain when choosing what to try next (see the
    module doc): :data:`EXPLORE_SD` / sqrt(:data:`PRIOR_WEIGHT` + n), n the queries on which this
    model's gain was measured, times the share the model-level estimate keeps in this task's
    estimate.

    The optimism is about the model-level estimate (a mean over few queries), so it is diluted
    exactly as that estimate is: where this task type's (or this task's) own record has taken
    over, the bonus goes with it. Undiluted, it kept TTT above the margin on held-out types
    where TTT never paid (6 adapters trained on 6 tasks of a type, each gaining nothing).

    None before anything is measured (the prior decides, as designed), for selection (its prior
    is no gain, after SELF-[IN]CORRECT), for a gain measured on all of this task's
    demonstrations (DG-DIFF, reflection's held-out gain): not an estimate from a few queries, or
    for an escalation from an *agreed* ICL answer (:data:`Band`): there the prior (a quarter of
    TTT's) buys two trials and the record decides. Measured (step 24,600, two held-out suites of
    36 tasks): agreed escalations gained 0 in 17 and took half the seconds the router spent
    escalating; the bonus kept TTT above the margin on 5 of 6 tasks of a type where it never
    paid (0.18 after one zero, 0.09 after four). On 1D-ARC, where they paid (+3 in 10, types
    the model is sure and wrong on), the record alone keeps them going.
    """
    n = int((evidence.get("model_gain_n") or {}).get(gain_key(strategy, band), 0))
    if n <= 0 or PRIOR_GAIN.get(strategy, 0.0) <= 0 or band == "agreed":
        return 0.0
    _, share = _estimates(evidence, band).get(strategy, (0.0, 0.0))
    return share * EXPLORE_SD / (PRIOR_WEIGHT + n) ** 0.5


def _shrunk(prior: float, weight: float, mean: float, n: int) -> float:
    """``mean`` of ``n`` observations averaged with ``prior`` counted as ``weight`` observations."""
    return (prior * weight + mean * n) / (weight + n)


def expected_cost(evidence: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Expected (seconds, tokens) of each model strategy: measured means, else ICL multiples."""
    call_s = float(evidence.get("icl_call_s") or 0.5)
    call_tokens = float(evidence.get("icl_call_tokens") or 200.0)
    samples = max(2, int(evidence.get("samples", 4)))
    demos = max(1, int(evidence.get("demos", 1)))
    rounds = max(1, int(evidence.get("reflect_rounds", 2)))
    calls = {"icl": 1.0, "select": samples + 1.0, "reflect": demos * rounds + 1.0}
    out = {s: (call_s * c, call_tokens * c) for s, c in calls.items()}
    views = max(1, int(evidence.get("ttt_views", 4)))
    out["ttt"] = (max(MIN_TTT_SECONDS, 100 * call_s), call_tokens * views)
    measured = evidence.get("costs") or {}
    for s, pair in measured.items():
        if s in out and pair:
            out[s] = (float(pair[0]), float(pair[1]))
    return out


def price(strategy: str, cost: dict[str, tuple[float, float]], settings: RouterSettings) -> float:
    """What running ``strategy`` costs in accuracy: its expected seconds over ``worth_s`` (the
    seconds of compute one more right answer is worth; 0 switches the price off)."""
    if settings.worth_s <= 0:
        return 0.0
    return cost[strategy][0] / settings.worth_s


def _worth_text(settings: RouterSettings) -> str:
    return f"{settings.worth_s:g} s a right answer"


def _remaining(evidence: dict[str, Any], settings: RouterSettings) -> tuple[float, float]:
    spent_s, spent_t = float(evidence.get("spent_s", 0.0)), float(evidence.get("spent_tokens", 0))
    left_s = settings.budget_s - spent_s if settings.budget_s else float("inf")
    left_t = settings.budget_tokens - spent_t if settings.budget_tokens else float("inf")
    return left_s, left_t


def _budget_text(settings: RouterSettings) -> str:
    parts = []
    if settings.budget_s:
        parts.append(f"{settings.budget_s:g} s")
    if settings.budget_tokens:
        parts.append(f"{settings.budget_tokens} tokens")
    return "budget " + " / ".join(parts) if parts else "no budget"


def decide(
    *,
    requested: str,
    evidence: dict[str, Any],
    attempts: list[Attempt] | None = None,
    settings: RouterSettings | None = None,
) -> Decision:
    """Choose what runs next for one query.

    Args:
        requested: The strategy the caller asked for (``"auto"`` lets the router choose).
        evidence: What was measured: ``demos``, ``samples``, ``can_adapt``/``can_score``,
            ``model``, ``outcomes`` (``n``/``correct`` of earlier queries of the task),
            ``loo_icl``/``loo_n`` (leave-one-out ICL accuracy on the demonstrations),
            ``gains``/``model_gains`` (measured gain over ICL per strategy, this task / this
            model), ``costs`` (measured (seconds, tokens) per strategy), ``icl_call_s``,
            ``icl_call_tokens``, ``spent_s``/``spent_tokens`` (this query so far).
        attempts: The strategies already tried for this query, in order.
        settings: The router's knobs.

    Returns:
        The decision (a strategy name or ``finalize``), with a one-line reason quoting the numbers.

    Raises:
        SettingsError: A strategy was asked for that the backend cannot run (one line).
    """
    attempts = list(attempts or [])
    settings = settings or RouterSettings()
    tried = [a["strategy"] for a in attempts]
    if requested != "auto":
        return _fixed(requested, evidence, tried)
    return _auto(evidence, attempts, settings)


def _decision(strategy: str, reason: str, evidence: dict[str, Any]) -> Decision:
    return Decision(strategy=strategy, reason=reason, evidence=dict(evidence))


def _fixed(requested: str, evidence: dict[str, Any], tried: list[str]) -> Decision:
    """An explicitly requested strategy: run it once (the expert after an ICL attempt), then stop."""
    demos = int(evidence.get("demos", 0))
    if requested == "ttt":
        check_strategy(
            "ttt", can_adapt=bool(evidence.get("can_adapt")), model=str(evidence.get("model", "?"))
        )
    if tried:
        if requested == "expert" and "expert" not in tried:
            reason = f"asked for an expert; the reviewer sees the {tried[-1]} candidates"
            return _decision("expert", reason, evidence)
        return _decision("finalize", f"asked for {requested}; done after {', '.join(tried)}", evidence)
    if requested == "expert":
        return _decision("icl", "asked for an expert; ICL first, so the reviewer has candidates", evidence)
    why = unavailable(requested, evidence)
    if why:
        return _decision("icl", f"asked for {requested}, but {why}; fell back to ICL", evidence)
    outcomes = evidence.get("outcomes") or {}
    history = f"; ICL so far {outcomes['correct']}/{outcomes['n']} on this task" if outcomes.get("n") else ""
    reasons = {
        "icl": f"asked for ICL; {demos} demonstrations in context{history}",
        "select": f"asked for selection among {max(2, int(evidence.get('samples', 4)))} candidates",
        "reflect": f"asked for reflection on {demos} demonstrations",
        "ttt": f"asked for TTT: an adapter trained on episodes of the {demos} demonstrations",
    }
    return _decision(requested, reasons[requested], evidence)


def _auto(evidence: dict[str, Any], attempts: list[Attempt], settings: RouterSettings) -> Decision:
    band = band_of(attempts, settings.confidence_threshold)
    acc = expected_accuracy(evidence, band)
    cost = expected_cost(evidence)
    tried = [a["strategy"] for a in attempts]
    loo = evidence.get("loo_icl")
    loo_text = f"LOO-ICL {loo:.2f} on {evidence.get('loo_n', 0)} demos" if loo is not None else "no LOO-ICL"
    budget = _budget_text(settings)
    if not attempts:
        reason = f"ICL first (cheapest, {cost['icl'][0]:.2f} s expected); {loo_text}; {budget}"
        return _decision("icl", reason, evidence)
    last = attempts[-1]
    if last["strategy"] == "expert":
        return _decision("finalize", "the expert answered", evidence)
    sure = stop_confidence(last, evidence, band)
    now = (
        f"{last['strategy']} confidence {last['confidence']:.2f}, expected {acc.get(last['strategy'], 0):.2f}"
    )
    if sure >= settings.confidence_threshold:
        return _decision(
            "finalize", f"{now} >= {settings.confidence_threshold:.2f}; no escalation needed", evidence
        )
    left_s, left_t = _remaining(evidence, settings)
    if left_s <= 0 or left_t <= 0:
        return _decision("finalize", f"{now}; {budget} spent", evidence)
    # Compared by expected gain over ICL, not by accuracy clipped at 1: with ICL right on every
    # demonstration no strategy could "beat" it, and the queries ICL is unsure of never escalated.
    gains = expected_gains(evidence, band)
    current = gains.get(last["strategy"], 0.0)
    options = {}
    skipped = []
    for s in LADDER:
        if s in tried:
            continue
        if why := unavailable(s, evidence):
            skipped.append(f"{s}: {why}")
            continue
        if cost[s][0] > left_s or cost[s][1] > left_t:
            skipped.append(f"{s}: ~{cost[s][0]:.1f} s over the {left_s:.1f} s left")
            continue
        # Worth its cost only if it beats the answer in hand (already paid for) by the margin, and
        # its gain covers its price: expected seconds / worth_s (a 30 s adapter at the default
        # 300 s costs 0.10 of accuracy), so a strategy that pays rarely stops being bought where it
        # is dear. Options are then compared net of their prices.
        # (with the exploration bonus: a gain measured on few queries is tried again)
        hoped, charge = gains[s] + explore_bonus(s, evidence, band), price(s, cost, settings)
        if hoped < current + settings.margin - 1e-9:
            continue
        if hoped - charge <= current:
            dear = f"~{cost[s][0]:.1f} s at {_worth_text(settings)}"
            skipped.append(f"{s}: {gains[s]:+.2f} does not pay {dear}")
            continue
        options[s] = hoped - charge
    if options:
        best = max(options.values())
        choice = min((s for s, a in options.items() if a >= best - settings.margin), key=lambda s: cost[s][0])
        gain = gains[choice]
        charge = price(choice, cost, settings)
        bonus = options[choice] - gain + charge
        explore = f", +{bonus:.2f} exploration bonus" if bonus >= 0.005 else ""
        priced = f", -{charge:.2f} for its cost at {_worth_text(settings)}" if charge >= 0.005 else ""
        reason = (
            f"chose {choice}: {now} < {settings.confidence_threshold:.2f}; {loo_text}; "
            f"{choice} expected {acc[choice]:.2f} "
            f"({gain:+.2f} over ICL, {_gain_source(choice, evidence, band)}{explore}{priced}), "
            f"~{cost[choice][0]:.1f} s; {budget}"
        )
        return _decision(choice, reason, evidence)
    tail = f" ({'; '.join(skipped)})" if skipped else ""
    if settings.expert_review and "expert" not in tried:
        return _decision("expert", f"{now}; no model strategy left that is expected to do better{tail}; "
                         "asking a human expert", evidence)  # fmt: skip
    better = f"no strategy left expected to do better by the {settings.margin:.2f} margin"
    return _decision("finalize", f"{now}; {better}{tail}", evidence)


def best_answer(attempts: list[Attempt], evidence: dict[str, Any], band: Band = "unsure") -> tuple[int, str]:
    """The attempt whose answer has the most support, and a one-line account of the weighing.

    An answer's support is the sum, over the attempts that gave it, of the attempt's confidence
    times its strategy's expected accuracy on this task (:func:`expected_accuracy`): agreement
    within a strategy and between strategies both count, except an attempt that asked an earlier
    one's prompt again (``repeat_of``: reflection that kept no note), which is no second
    opinion. On a tie the later (costlier) attempt wins. The expert's answer always wins.
    ``band``: the kind of escalation (:data:`Band`) whose estimates weigh the strategies.

    Returns:
        ``(index into attempts, reason)``; ``(-1, "")`` when there are no attempts.
    """
    if not attempts:
        return -1, ""
    for i in range(len(attempts) - 1, -1, -1):
        if attempts[i]["strategy"] == "expert":
            return i, "the expert's answer"
    acc = expected_accuracy(evidence, band)
    support: dict[str, float] = {}
    latest: dict[str, int] = {}
    parts = []
    for i, a in enumerate(attempts):
        weight = float(a["confidence"]) * acc.get(a["strategy"], 0.5)
        if a.get("repeat_of"):  # the same prompt again: the same answer, not more support
            parts.append(f"{a['strategy']} (repeats {a['repeat_of']})")
            continue
        parts.append(f"{a['strategy']} {a['confidence']:.2f} x {acc.get(a['strategy'], 0.5):.2f}")
        if a["answer"] is None:
            continue
        key = json.dumps(a["answer"], sort_keys=True, default=str)
        support[key] = support.get(key, 0.0) + weight
        latest[key] = i
    if not support:
        return len(attempts) - 1, "no attempt gave a parseable answer"
    top = max(support.values())
    winner = max((k for k, v in support.items() if v >= top - 1e-9), key=lambda k: latest[k])
    i = latest[winner]
    agree = [a["strategy"] for a in attempts if a["answer"] is not None and not a.get("repeat_of") and
             json.dumps(a["answer"], sort_keys=True, default=str) == winner]  # fmt: skip
    return i, (
        f"answer of {'+'.join(agree)} (support {top:.2f}; confidence x expected accuracy: {', '.join(parts)})"
    )


def _gain_source(strategy: str, evidence: dict[str, Any], band: Band = "unsure") -> str:
    if strategy in (evidence.get("gains") or {}) and strategy not in (evidence.get("gain_n") or {}):
        return "measured on this task"  # on all the demonstrations: the same for either band
    key = gain_key(strategy, band)
    kind = " of escalations from agreeing ICL samples" if band == "agreed" else ""
    if key in (evidence.get("type_gains") or {}):
        upper = f"this task type's record{kind}"
    elif key in (evidence.get("model_gains") or {}):
        upper = f"mean over this model's tasks{kind}"
    else:
        upper = f"prior{kind}"
    if key in (evidence.get("gains") or {}):
        n = (evidence.get("gain_n") or {}).get(key)
        return f"measured on {n} recorded queries of this task, averaged with the {upper}"
    return upper


def next_node(state: State) -> Destination:
    """Conditional edge after ``route``: the node that runs the chosen strategy, or ``finalize``."""
    strategy = state.get("decision", {}).get("strategy", "icl")
    if strategy == "icl":
        return "icl"
    if strategy == "select":
        return "select"
    if strategy == "reflect":
        return "reflect"
    if strategy == "ttt":
        return "ttt"
    if strategy == "expert":
        return "expert"
    if strategy == "finalize":
        return "finalize"
    raise ValueError(f"router chose an unknown strategy {strategy!r}")  # a bug, not a user error
