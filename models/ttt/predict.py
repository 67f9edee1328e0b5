"""Voted prediction: the query under several views, each answer mapped back, hierarchically voted."""

from __future__ import annotations

import math
from typing import Any

from models.base import Generation, ModelBackend, PromptParts, Usage
from models.ttt.config import Job
from tasks.augment import Augmenter, augment_task, hierarchical_vote
from tasks.schema import Task

#: Prefix of the view families of the prior's votes (``prior_votes``): counted as families of
#: their own, so the per-family cap of the vote applies to each model apart.
PRIOR = "prior:"


def greedy_under_view(
    model: ModelBackend, task: Task, query: Any, view: Augmenter, notes: list[str]
) -> tuple[Any, Generation]:
    """The greedy answer to ``query`` with ``task`` seen through ``view``, mapped back by the view's
    inverse (``None`` where unparseable or not invertible), and its generation."""
    seen = augment_task(task.model_copy(update={"test": []}), view)
    shown = view.apply(query) if task.kind in ("grid", "tabular") else query
    parts = PromptParts(kind=task.kind, function=task.function, notes=notes, demos=seen.train, query=shown)
    gen = model.generate(model.renderer.render(parts), n=1, temperature=0.0)
    answer = model.renderer.parse(gen.samples[0].text, task.kind, parts)
    if answer is not None and task.kind in ("grid", "tabular"):  # a table view renames labels
        try:
            answer = view.inverse(answer)
        except ValueError:  # a ragged answer cannot be transposed back
            answer = None
    return answer, gen


def view_votes(job: Job) -> tuple[list[tuple[str, Any]], float | None, Usage]:
    """Greedy answers to ``job.query`` under each of ``job.predict_views``, mapped back by the
    view's inverse, with the current weights (the adapter's while one is attached).

    Returns:
        ``(view family, answer)`` pairs (answer ``None`` where unparseable), the last
        generation's log-probability, and the generations' token accounting.
    """
    votes: list[tuple[str, Any]] = []
    logprob: float | None = None
    usage = Usage()
    for view in job.predict_views:
        answer, gen = greedy_under_view(job.model, job.task, job.query, view, job.task.notes)
        usage += gen.usage
        logprob = gen.samples[0].logprob
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
