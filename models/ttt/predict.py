"""Prediction under views: the query under several views, each answer mapped back, then
hierarchically voted, or (a classification table, a backend that scores) each label's
probability averaged over the views."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from models.base import Generation, ModelBackend, PromptParts, Sample, Usage, answer_key, softmax
from models.ttt.config import Job
from tasks.augment import Augmenter, augment_task, hierarchical_vote, table_classes
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


def averages_views(task: Task, model: ModelBackend) -> bool:
    """Whether answers to ``task`` average label probabilities over views
    (:func:`label_distribution`) instead of voting greedy answers: a classification table and a
    backend that scores."""
    return task.kind == "tabular" and model.capabilities.score and bool(table_classes(task))


@dataclass
class LabelDistribution:
    """A classification table's label probabilities averaged over views, and how each view voted."""

    probs: dict[str, float] = field(default_factory=dict)  # answer key -> probability (sums to 1)
    labels: dict[str, Any] = field(default_factory=dict)  # answer key -> the label itself
    firsts: dict[str, int] = field(default_factory=dict)  # answer key -> views that ranked it first
    samples: list[Sample] = field(default_factory=list)  # each view's most probable label
    usage: Usage = field(default_factory=Usage)  # the scoring's tokens

    def ranked(self) -> list[tuple[Any, float]]:
        """``(label, probability)`` pairs, most probable first (ties: the first seen)."""
        return [(self.labels[k], self.probs[k]) for k in sorted(self.probs, key=lambda k: -self.probs[k])]

    def mixed(self, other: LabelDistribution, share: float) -> LabelDistribution:
        """This distribution with ``other`` mixed in at ``share`` of the weight (its samples and
        usage added)."""
        keys = list(self.probs) + [k for k in other.probs if k not in self.probs]
        return LabelDistribution(
            probs={k: (1 - share) * self.probs.get(k, 0.0) + share * other.probs.get(k, 0.0) for k in keys},
            labels=self.labels | other.labels,
            firsts={k: self.firsts.get(k, 0) + other.firsts.get(k, 0) for k in keys},
            samples=self.samples + other.samples,
            usage=self.usage + other.usage,
        )


def label_distribution(
    model: ModelBackend, task: Task, query: Any, views: list[Augmenter], notes: list[str]
) -> LabelDistribution:
    """A classification table's label distribution averaged over ``views``: under each view
    every class the demonstrations have is scored, the scores are normalised over the classes,
    and each probability goes back to the class it stands for (a view permutes the labels).
    This is TabPFN's ensemble, which averages probabilities over permuted features and classes
    rather than votes: greedy labels under views agree so often that their majority moved
    nothing (measured at :data:`graph.context.KIND_SAMPLE_VIEWS`)."""
    renderer = model.renderer
    dist = LabelDistribution()
    for view in views:
        seen = augment_task(task, view)
        parts = PromptParts(
            kind=task.kind, function=task.function, notes=notes, demos=seen.train, query=view.apply(query)
        )
        classes = table_classes(seen)
        # The label without the line's end, which follows every label alike: one symbol a
        # class, so a backend reads every class from one pass over the prompt.
        texts = [renderer.format_value(c, task.kind, parts).removesuffix("\n") for c in classes]
        prompt = renderer.render(parts)
        probs = softmax(model.score(prompt, texts))
        dist.usage += model.score_usage(prompt, texts)
        best = max(range(len(classes)), key=lambda i: (probs[i], -i))
        dist.samples.append(Sample(text=texts[best], logprob=math.log(max(probs[best], 1e-12))))
        for i, (c, prob) in enumerate(zip(classes, probs, strict=True)):
            label = view.inverse(c)
            key = answer_key(label)
            dist.labels[key] = label
            dist.probs[key] = dist.probs.get(key, 0.0) + prob / len(views)
            dist.firsts[key] = dist.firsts.get(key, 0) + (i == best)
    return dist


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
