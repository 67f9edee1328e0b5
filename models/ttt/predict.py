"""Voted prediction: the query under several views, each answer mapped back, hierarchically voted."""

from __future__ import annotations

import math
from typing import Any

from models.base import PromptParts, Usage
from models.ttt.config import Job
from tasks.augment import augment_task, hierarchical_vote

#: Prefix of the view families of the prior's votes (``prior_votes``): counted as families of
#: their own, so the per-family cap of the vote applies to each model apart.
PRIOR = "prior:"


def view_votes(job: Job) -> tuple[list[tuple[str, Any]], float | None, Usage]:
    """Greedy answers to ``job.query`` under each of ``job.predict_views``, mapped back by the
    view's inverse, with the current weights (the adapter's while one is attached).

    Returns:
        ``(view family, answer)`` pairs (answer ``None`` where unparseable), the last
        generation's log-probability, and the generations' token accounting.
    """
    model, task = job.model, job.task
    votes: list[tuple[str, Any]] = []
    logprob: float | None = None
    usage = Usage()
    for view in job.predict_views:
        seen = augment_task(task.model_copy(update={"test": []}), view)
        shown = view.apply(job.query) if task.kind in ("grid", "tabular") else job.query
        parts = PromptParts(
            kind=task.kind, function=task.function, notes=task.notes, demos=seen.train, query=shown
        )
        gen = model.generate(model.renderer.render(parts), n=1, temperature=0.0)
        usage += gen.usage
        logprob = gen.samples[0].logprob
        answer = model.renderer.parse(gen.samples[0].text, task.kind, parts)
        if answer is not None and task.kind in ("grid", "tabular"):  # a table view renames labels
            try:
                answer = view.inverse(answer)
            except ValueError:  # a ragged answer cannot be transposed back
                answer = None
        votes.append((view.family, answer))
    return votes, logprob, usage


def rank(
    votes: list[tuple[str, Any]], *, logprob: float | None = None, prior: list[tuple[str, Any]] | None = None
) -> list[tuple[Any, float]]:
    """The adapter's ``votes`` and the prior's (``prior``: the base model's under the same views;
    none or empty: the adapter votes alone) hierarchically voted; ``(answer, share)`` pairs, best first.

    The adapter's votes go first, so on a tie its answer wins: the prior outvotes the adapter
    only where the adapter's own views disagree and the prior's agree more. With one view and no
    prior there is nothing to vote on, and a share of 1 would say nothing: the answer's
    confidence is then its sequence probability (``exp`` of ``logprob``), when the backend
    reports it.
    """
    together = votes + [(PRIOR + family, answer) for family, answer in prior or []]
    ranked = hierarchical_vote(together)
    if len(together) == 1 and ranked and logprob is not None:
        ranked = [(ranked[0][0], round(math.exp(min(0.0, logprob)), 4))]
    return ranked
