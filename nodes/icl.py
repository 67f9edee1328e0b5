"""``icl``: in-context prediction (Mockingbird's role-play).

The model plays the task's function: it sees the role-play description, notes and the
demonstrations, then answers the query. One greedy sample is the default answer; extra samples
at ``Context.temperature`` measure agreement, which is the confidence the router reads.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import Candidate, State
from models.base import Generation, ModelBackend, PromptParts
from nodes.candidates import aggregate, confidence
from nodes.common import node_inputs, strategy_update, trace_event
from tasks.schema import Task


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
    ) -> tuple[list[Candidate], Generation]:
        """Sample answers to ``query`` and group them into candidates.

        Returns:
            The candidates (best first) and the combined generation (usage, time).
        """
        demos = task.train[:max_demos] if max_demos else task.train
        parts = PromptParts(kind=task.kind, function=task.function, notes=notes, demos=demos, query=query)
        prompt = self.model.renderer.render(parts)
        gen = self.model.generate(prompt, n=1, temperature=0.0, seed=seed)
        if samples > 1:
            extra = self.model.generate(prompt, n=samples - 1, temperature=temperature, seed=seed)
            gen = Generation(
                samples=gen.samples + extra.samples,
                usage=gen.usage + extra.usage,
                seconds=gen.seconds + extra.seconds,
            )
        return aggregate(gen, self.model.renderer, task.kind, parts), gen


def make_icl_node(bound: ModelBackend | None = None) -> Any:  # a LangGraph node
    """Build the ``icl`` node; ``bound`` fixes the model for this graph (else the context's)."""

    def icl(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx, task, model, _ = node_inputs(state, runtime, bound)
        runtime.stream_writer({"node": "icl", "message": f"sampling {ctx.samples} with {model.name}"})
        candidates, gen = ICLPredictor(model).forward(
            task,
            state["query"]["input"],
            notes=state.get("notes", []),
            samples=ctx.samples,
            temperature=ctx.temperature,
            max_demos=ctx.max_demos,
            seed=ctx.seed,
        )
        conf = confidence(candidates, len(gen.samples))
        top = candidates[0] if candidates else None
        message = (
            f"{len(candidates)} distinct answers from {len(gen.samples)} samples; "
            f"top has {top['votes'] if top else 0} votes, confidence {conf:.2f}"
        )
        trace = [trace_event("icl", message, gen.usage.total_tokens)]
        return strategy_update("icl", candidates, conf, started, gen.usage, trace)

    return icl
