"""``icl``: in-context prediction (Mockingbird's role-play).

The model plays the task's function: it sees the role-play description, notes and the
demonstrations, then answers the query. One greedy sample is the default answer; extra samples
vote on it: samples at ``Context.temperature``, or (``Context.sample_views``, the default for
grids) greedy answers under invertible views of the task, mapped back: on the held-out families
(180 tasks, 4 samples, step 24,600) 128 right against 121, with fewer confident wrong answers
(18 against 26 at confidence >= 0.6). The confidence the router reads is the answer's sequence
probability where the backend gives log-probabilities, else the agreement
(:func:`nodes.candidates.confidence`). On a table (:data:`GREEDY_ONLY_KINDS`) no sample is drawn at
the temperature: a backend that scores averages every label's probability over views (the default,
:meth:`ICLPredictor._averaged_views`), else the greedy label alone is drawn; the probability is the
confidence.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context, sample_views_for
from graph.state import Candidate, State
from models.base import Generation, ModelBackend, PromptParts, Sample, Usage
from models.ttt.predict import averages_views, greedy_under_view, label_distribution
from nodes.candidates import aggregate, answer_key, confidence, group
from nodes.common import node_inputs, strategy_update, trace_event
from tasks.augment import sample_views
from tasks.schema import Task

#: Kinds with invertible views (:func:`tasks.augment.sample_views`).
VIEW_KINDS = ("grid", "tabular")

#: Kinds whose ICL answer is the greedy sample alone, whatever ``samples`` says (views, where asked
#: for, still vote). Samples at the temperature could only measure agreement, a coarse, noisy
#: share of a flattened distribution; the greedy answer's probability says how sure the model is
#: directly, for a quarter of the forward passes. Measured on the
#: table model (step 11,000): the majority of 4 samples 54.9 % against the greedy label 59.9 % (22
#: held-out synthetic tables, 880 queries, session 34); the router with the agreement of 4 samples
#: against the greedy label's probability, held-out synthetic tables (2,340 queries, session 35):
#: 1,329 against 1,325 right, at 0.11 against 0.07 s a query on the 73 tables of seed 99099.
GREEDY_ONLY_KINDS = ("tabular",)


class ICLPredictor:
    """Predict one query in context: render, sample, parse, vote."""

    def __init__(self, model: ModelBackend) -> None:
        self.model = model

    def forward(
        self,
        task: Task,
        query: Any,
        *,
        notes: list[str],
        samples: int = 1,
        temperature: float = 0.7,
        max_demos: int = 0,
        seed: int = 0,
        views: bool = False,
    ) -> tuple[list[Candidate], Generation]:
        """Sample answers to ``query`` and group them into candidates.

        ``views``: the samples after the first are greedy answers under invertible views of the
        task (:func:`tasks.augment.sample_views`: a grid's mirror and colour permutations, a
        table's row and column order and label names), mapped back, instead of samples at
        ``temperature``: an ensemble over changes that should not change the answer. Kinds
        without views (lists, text) sample as usual.

        Returns:
            The candidates (best first) and the combined generation (usage, time).
        """
        demos = task.train[:max_demos] if max_demos else task.train
        if views and samples > 1 and task.kind in VIEW_KINDS:
            seen = task.model_copy(update={"train": demos, "test": []})
            if averages_views(seen, self.model):
                return self._averaged_views(seen, query, notes=notes, n=samples, seed=seed)
            return self._under_views(seen, query, notes=notes, n=samples, seed=seed)
        parts = PromptParts(kind=task.kind, function=task.function, notes=notes, demos=demos, query=query)
        prompt = self.model.renderer.render(parts)
        gen = self.model.generate(prompt, n=1, temperature=0.0, seed=seed)
        if samples > 1 and task.kind not in GREEDY_ONLY_KINDS:
            extra = self.model.generate(prompt, n=samples - 1, temperature=temperature, seed=seed)
            gen = Generation(
                samples=gen.samples + extra.samples,
                usage=gen.usage + extra.usage,
                seconds=gen.seconds + extra.seconds,
            )
        return aggregate(gen, self.model.renderer, task.kind, parts), gen

    def _under_views(
        self, task: Task, query: Any, *, notes: list[str], n: int, seed: int
    ) -> tuple[list[Candidate], Generation]:
        """One greedy answer under each of ``n`` views (the identity first, so its answer wins
        a tie, as the greedy sample does), mapped back by the view's inverse and grouped."""
        answers: list[tuple[Any, Sample]] = []
        samples: list[Sample] = []
        usage, seconds = Usage(), 0.0
        for view in sample_views(random.Random(seed), task, n):
            answer, gen = greedy_under_view(self.model, task, query, view, notes)
            samples += gen.samples
            usage, seconds = usage + gen.usage, seconds + gen.seconds
            answers.append((answer, gen.samples[0]))
        return group(answers), Generation(samples=samples, usage=usage, seconds=seconds)

    def _averaged_views(
        self, task: Task, query: Any, *, notes: list[str], n: int, seed: int
    ) -> tuple[list[Candidate], Generation]:
        """A classification table's label distribution averaged over ``n`` views (the identity
        first; :func:`models.ttt.predict.label_distribution`). The candidates are the classes,
        most probable first; a candidate's log-probability is that of its averaged probability,
        its votes the views whose most probable class it was."""
        started = time.perf_counter()
        dist = label_distribution(self.model, task, query, sample_views(random.Random(seed), task, n), notes)
        original = PromptParts(
            kind=task.kind, function=task.function, notes=notes, demos=task.train, query=query
        )
        candidates = [
            Candidate(
                answer=label,
                text=self.model.renderer.format_value(label, task.kind, original),
                votes=dist.firsts.get(answer_key(label), 0),
                logprob=math.log(max(prob, 1e-12)),
            )
            for label, prob in dist.ranked()
        ]
        generation = Generation(samples=dist.samples, usage=dist.usage, seconds=time.perf_counter() - started)
        return candidates, generation


def uses_views(ctx: Context, task: Task, model: ModelBackend) -> bool:
    """Whether ICL's extra samples on ``task`` are answers under views (``Context.sample_views``):
    the same for every node that answers in context (ICL, reflection's answer, the expert's)."""
    can_average = averages_views(task, model)
    views = sample_views_for(ctx.sample_views, task.kind, can_average=can_average)
    return views and ctx.samples > 1 and task.kind in VIEW_KINDS


def make_icl_node(bound: ModelBackend | None = None) -> Any:  # a LangGraph node
    """Build the ``icl`` node; ``bound`` fixes the model for this graph (else the context's)."""

    def icl(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx, task, model, _ = node_inputs(state, runtime, bound)
        views = uses_views(ctx, task, model)
        n = ctx.samples if views or task.kind not in GREEDY_ONLY_KINDS else 1
        runtime.stream_writer({"node": "icl", "message": f"sampling {n} with {model.name}"})
        candidates, gen = ICLPredictor(model).forward(
            task,
            state["query"]["input"],
            notes=state.get("notes", []),
            samples=ctx.samples,
            temperature=ctx.temperature,
            max_demos=ctx.max_demos,
            seed=ctx.seed,
            views=views,
        )
        conf = confidence(candidates, len(gen.samples), probability=True)
        top = candidates[0] if candidates else None
        message = (
            f"{len(candidates)} distinct answers from {len(gen.samples)} "
            f"{'greedy answers under views' if views else 'samples'}; "
            f"top has {top['votes'] if top else 0} votes, confidence {conf:.2f}"
        )
        if views and task.kind in GREEDY_ONLY_KINDS and model.capabilities.score:
            message = (
                f"label probabilities averaged over {len(gen.samples)} views; top first in "
                f"{top['votes'] if top else 0} of them, probability {conf:.2f}"
            )
        trace = [trace_event("icl", message, gen.usage.total_tokens)]
        return strategy_update("icl", candidates, conf, started, gen.usage, trace)

    return icl
