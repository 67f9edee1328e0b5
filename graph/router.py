"""The router: the one place where strategy decisions live.

``decide`` is a pure function from measured evidence to a :class:`~graph.state.Decision`; the
``route`` node gathers the evidence and records the decision; ``next_node`` is the conditional
edge that follows it. Later issues add strategies (reflection, selection, test-time training,
the human expert) and the evidence that chooses among them, here and nowhere else.
"""

from __future__ import annotations

from typing import Any, Literal

from graph.errors import SettingsError
from graph.state import Decision, State

#: Graph nodes a decision can lead to.
Destination = Literal["icl", "ttt"]


def check_strategy(requested: str, *, can_adapt: bool, model: str) -> None:
    """Refuse, in one line, a strategy the backend cannot run (before any work is done)."""
    if requested == "ttt" and not can_adapt:
        raise SettingsError(
            f"strategy ttt: model {model!r} cannot adapt; test-time training trains a LoRA adapter, "
            "which needs a local model (embedded or hf:PATH)"
        )


def decide(*, requested: str, evidence: dict[str, Any]) -> Decision:
    """Choose a strategy for one query.

    Args:
        requested: The strategy the caller asked for (``"auto"`` lets the router choose).
        evidence: What was measured before deciding: ``demos`` (number of demonstrations),
            ``can_adapt`` / ``can_score`` (backend capabilities), ``outcomes`` (recorded results
            of earlier queries of the task: ``n`` and ``correct``), ``samples``.

    Returns:
        The decision, with a one-line reason that quotes the numbers.
    """
    demos = int(evidence.get("demos", 0))
    outcomes = evidence.get("outcomes") or {}
    history = ""
    if outcomes.get("n"):
        history = f"; ICL so far {outcomes['correct']}/{outcomes['n']} on this task"
    if requested == "ttt":
        check_strategy(
            "ttt", can_adapt=bool(evidence.get("can_adapt")), model=str(evidence.get("model", "?"))
        )
        if demos >= 2:
            reason = f"asked for TTT; {demos} demonstrations give {demos} leave-one-out episodes"
            return Decision(strategy="ttt", reason=reason, evidence=dict(evidence))
        reason = f"asked for TTT, but {demos} demonstration(s) leave nothing to hold out; fell back to ICL"
    elif requested == "icl":
        reason = f"asked for ICL; {demos} demonstrations in context{history}"
    else:
        # Until strategies are compared on measured evidence (a later issue), auto takes the
        # cheapest strategy, which every backend supports.
        reason = f"ICL is the cheapest strategy; {demos} demonstrations in context{history}"
    return Decision(strategy="icl", reason=reason, evidence=dict(evidence))


def next_node(state: State) -> Destination:
    """Conditional edge after ``route``: the node that runs the chosen strategy."""
    strategy = state.get("decision", {}).get("strategy", "icl")
    if strategy == "icl":
        return "icl"
    if strategy == "ttt":
        return "ttt"
    raise ValueError(f"router chose an unknown strategy {strategy!r}")  # a bug, not a user error
