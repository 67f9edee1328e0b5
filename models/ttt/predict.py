"""Voted prediction: the query under several views, each answer mapped back, hierarchically voted."""

from __future__ import annotations

import math
from typing import Any

from models.base import PromptParts, Usage
from models.ttt.config import Job
from tasks.augment import augment_task, hierarchical_vote


def predict(job: Job) -> tuple[list[tuple[Any, float]], Usage]:
    """Greedy answers to ``job.query`` under each of ``job.predict_views``, mapped back by the view's
    inverse and hierarchically voted (and the generations' token accounting).

    With one view there is nothing to vote on, and a share of 1 would say nothing: the answer's
    confidence is then its sequence probability under the model (``exp`` of its log-probability),
    when the backend reports it.
    """
    model, task, views = job.model, job.task, job.predict_views
    votes: list[tuple[str, Any]] = []
    logprob: float | None = None
    usage = Usage()
    for view in views:
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
    ranked = hierarchical_vote(votes)
    if len(views) == 1 and ranked and logprob is not None:
        ranked = [(ranked[0][0], round(math.exp(min(0.0, logprob)), 4))]
    return ranked, usage
