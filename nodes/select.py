"""``select``: self-selection among sampled answers (SELF-[IN]CORRECT, Jiang et al. 2024).

The model samples ``n`` answers in context (at least two), then picks one of the distinct
answers itself:

* by **log-likelihood** where the backend can score (``capabilities.score``): each candidate,
  written as the model writes answers, is scored as the continuation of the same prompt; the
  highest wins and the confidence is its softmax share over the candidates;
* else, for chat models, by a **multiple-choice** prompt (``prompts/select.txt``) whose reply is
  parsed into an option; the confidence is the chosen answer's share of the samples. An
  unparseable reply (or a backend with neither) falls back to the majority vote, said in the trace.

Whether selection pays is an empirical question per model and task (the paper's point: models
often discriminate no better than they generate). :func:`measure_dg_diff` measures it on the
task's own demonstrations, leave-one-out: DG-DIFF = selection accuracy - generation accuracy. The
node stores it with the task once, for the router.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import Context
from graph.memory import task_evidence, update_evidence
from graph.state import Candidate, State
from models.base import ModelBackend, PromptParts, Usage, softmax
from nodes.common import (
    known_notes,
    measured_before,
    node_inputs,
    strategy_update,
    trace_event,
)
from nodes.icl import ICLPredictor
from nodes.loo import leave_one_out
from tasks.schema import Task
from tasks.scoring import is_correct

logger = logging.getLogger(__name__)

#: How the candidate was chosen.
Method = Literal["score", "choice", "vote", "single", "none"]


class SelectionResult(BaseModel):
    """The candidates, the one chosen and how."""

    candidates: list[Candidate]
    """Distinct answers, the chosen one first (then by score or votes); unparseable last."""
    chosen: Candidate | None
    """The chosen candidate (``None`` when no sample parsed)."""
    method: Method
    confidence: float
    scores: list[float] | None = None
    """Log-likelihood of each parseable candidate (sampled order), when scored."""
    greedy: Any = None
    """The greedy sample's answer: plain generation's answer, for DG-DIFF."""
    samples: int = 0
    message: str = ""
    usage: Usage = Field(default_factory=Usage)

    @property
    def answer(self) -> Any:
        """The chosen answer (``None`` when nothing parsed)."""
        return self.chosen["answer"] if self.chosen is not None else None


class DGDiff(BaseModel):
    """Generation vs selection accuracy on a task's demonstrations (leave-one-out)."""

    gen_acc: float
    select_acc: float
    dg_diff: float
    """``select_acc - gen_acc``: positive when the model picks better than it generates."""
    n: int
    usage: Usage = Field(default_factory=Usage)


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How candidates are sampled: how many, how hot, from how many demonstrations, which seed."""

    n: int = 4
    """Samples (at least 2 are drawn: one sample leaves nothing to select)."""
    temperature: float = 0.7
    max_demos: int = 0
    """Demonstrations per prompt (0 = all)."""
    seed: int = 0


def softmax_share(scores: list[float], index: int) -> float:
    """``exp(scores[index])`` normalised over all scores (numerically stable)."""
    return softmax(scores)[index]


class Selector:
    """Sample candidates, then let the model pick one (DSPy-style module)."""

    def __init__(self, model: ModelBackend) -> None:
        self.model = model

    def forward(
        self, task: Task, query: Any, *, notes: list[str], sampling: Sampling = Sampling()
    ) -> SelectionResult:
        """Sample ``max(sampling.n, 2)`` answers to ``query`` and select one.

        Raises:
            ModelError: If a model call fails (from the backend).
        """
        candidates, gen = ICLPredictor(self.model).forward(
            task,
            query,
            notes=notes,
            samples=max(sampling.n, 2),
            temperature=sampling.temperature,
            max_demos=sampling.max_demos,
            seed=sampling.seed,
        )
        renderer = self.model.renderer
        max_demos = sampling.max_demos
        demos = task.train[:max_demos] if max_demos else task.train
        parts = PromptParts(kind=task.kind, function=task.function, notes=notes, demos=demos, query=query)
        greedy = renderer.parse(gen.samples[0].text, task.kind, parts) if gen.samples else None
        options = [i for i, c in enumerate(candidates) if c["answer"] is not None]
        base: dict[str, Any] = {"greedy": greedy, "samples": len(gen.samples), "usage": gen.usage}
        if not options:
            return SelectionResult(
                candidates=candidates,
                chosen=None,
                method="none",
                confidence=0.0,
                message="no sample could be parsed",
                **base,
            )
        if len(options) == 1:
            return _chosen(candidates, options[0], "single", "one distinct answer: nothing to select", base)
        if self.model.capabilities.score:
            return self._by_score(candidates, options, parts, base)
        if renderer.name == "chat":
            return self._by_choice(candidates, options, parts, base)
        return _by_vote(candidates, options, base, f"{self.model.name} can neither score nor read prose")

    def _by_score(
        self, candidates: list[Candidate], options: list[int], parts: PromptParts, base: dict[str, Any]
    ) -> SelectionResult:
        renderer = self.model.renderer
        prompt = renderer.render(parts)
        texts = [renderer.format_value(candidates[i]["answer"], parts.kind, parts) for i in options]
        scores = self.model.score(prompt, texts)
        best = max(range(len(options)), key=lambda k: (scores[k], -k))  # ties: more votes first
        order = sorted(range(len(options)), key=lambda k: (-scores[k], k))
        ranked = [candidates[options[k]] for k in order]
        ranked += [c for c in candidates if c["answer"] is None]
        usage = base["usage"] + self.model.score_usage(prompt, texts)
        return SelectionResult(
            candidates=ranked,
            chosen=candidates[options[best]],
            method="score",
            confidence=round(softmax_share(scores, best), 4),
            scores=[round(s, 4) for s in scores],
            message=f"scored {len(options)} candidates; best log-likelihood {scores[best]:.2f}",
            **(base | {"usage": usage}),
        )

    def _by_choice(
        self, candidates: list[Candidate], options: list[int], parts: PromptParts, base: dict[str, Any]
    ) -> SelectionResult:
        from prompts.chat import OPTION_LETTERS, parse_choice, render_selection

        options = options[: len(OPTION_LETTERS)]
        values = [candidates[i]["answer"] for i in options]
        gen = self.model.generate(render_selection(parts, values), n=1, temperature=0.0)
        usage = base["usage"] + gen.usage
        reply = gen.samples[0].text if gen.samples else ""
        pick = parse_choice(reply, values, parts.kind)
        if pick is None:
            short = " ".join(reply.split())[:60]
            return _by_vote(
                candidates, options, base | {"usage": usage}, f"unparseable choice {short!r}: majority vote"
            )
        message = f"chose ({OPTION_LETTERS[pick]}) of {len(options)} candidates"
        return _chosen(candidates, options[pick], "choice", message, base | {"usage": usage})


def _chosen(
    candidates: list[Candidate], chosen: int, method: Method, message: str, base: dict[str, Any]
) -> SelectionResult:
    """Candidate ``chosen`` first, its share of the samples as the confidence."""
    return SelectionResult(
        candidates=[candidates[chosen], *(c for i, c in enumerate(candidates) if i != chosen)],
        chosen=candidates[chosen],
        method=method,
        confidence=round(candidates[chosen]["votes"] / base["samples"], 4),
        message=message,
        **base,
    )


def _by_vote(
    candidates: list[Candidate], options: list[int], base: dict[str, Any], why: str
) -> SelectionResult:
    """The majority answer (candidates are already sorted by votes, unparseable last)."""
    return _chosen(candidates, options[0], "vote", f"{why}; took the majority answer", base)


def measure_dg_diff(
    model: ModelBackend, task: Task, *, notes: list[str] | None = None, sampling: Sampling = Sampling()
) -> DGDiff:
    """DG-DIFF on the task's demonstrations, each held out from its own prompt.

    For each demonstration: generation is correct when the greedy answer matches its output;
    selection is correct when the selected candidate (among ``sampling.n`` samples) matches.
    The i-th held-out demonstration is sampled with seed ``sampling.seed + i``.

    Returns:
        Both accuracies, their difference and the number of demonstrations (0 when there are none).
    """
    selector = Selector(model)
    usage = Usage()
    gen_ok = sel_ok = 0
    for i, demo, rest, seen in leave_one_out(task, notes or []):
        result = selector.forward(
            rest, demo.input, notes=seen, sampling=replace(sampling, seed=sampling.seed + i)
        )
        usage += result.usage
        gen_ok += is_correct(task, result.greedy, demo.output)
        sel_ok += is_correct(task, result.answer, demo.output)
    total = len(task.train)
    gen_acc = gen_ok / total if total else 0.0
    sel_acc = sel_ok / total if total else 0.0
    return DGDiff(gen_acc=gen_acc, select_acc=sel_acc, dg_diff=sel_acc - gen_acc, n=total, usage=usage)


def _stored_dg(evidence: dict[str, Any], task: Task, model: ModelBackend) -> bool:
    """Whether DG-DIFF was measured for this task with this model and these demonstrations."""
    return measured_before(evidence, "dg_diff", "dg", len(task.train), model.name)


def make_select_node(bound: ModelBackend | None = None) -> Any:  # a LangGraph node
    """Build the ``select`` node; ``bound`` fixes the model for this graph (else the context's)."""

    def select(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx, task, model, store = node_inputs(state, runtime, bound)
        notes = known_notes(state, store, task)
        samples = max(ctx.samples, 2)
        sampling = Sampling(n=samples, temperature=ctx.temperature, max_demos=ctx.max_demos, seed=ctx.seed)
        usage = Usage()
        trace: list[dict[str, Any]] = []
        evidence = task_evidence(store, task.key)
        if _stored_dg(evidence, task, model):
            trace.append(
                trace_event(
                    "select",
                    f"DG-DIFF measured earlier: {evidence['dg_diff']:+.2f} "
                    f"(selection {evidence['select_acc']:.2f}, generation {evidence['gen_acc']:.2f})",
                )
            )
        elif task.train:
            runtime.stream_writer({"node": "select", "message": f"measuring DG-DIFF with {model.name}"})
            dg = measure_dg_diff(model, task, notes=notes, sampling=sampling)
            usage += dg.usage
            update_evidence(
                store,
                task.key,
                dg_diff=round(dg.dg_diff, 4),
                select_acc=round(dg.select_acc, 4),
                gen_acc=round(dg.gen_acc, 4),
                dg_n=dg.n,
                dg_model=model.name,
            )
            trace.append(
                trace_event(
                    "select",
                    f"DG-DIFF {dg.dg_diff:+.2f} on {dg.n} held-out demonstrations "
                    f"(selection {dg.select_acc:.2f}, generation {dg.gen_acc:.2f})",
                    dg.usage.total_tokens,
                )
            )
        runtime.stream_writer({"node": "select", "message": f"sampling {samples} with {model.name}"})
        result = Selector(model).forward(task, state["query"]["input"], notes=notes, sampling=sampling)
        usage += result.usage
        trace.append(
            trace_event(
                "select",
                f"{len(result.candidates)} distinct answers from {result.samples} samples; "
                f"{result.method}: {result.message}; confidence {result.confidence:.2f}",
                result.usage.total_tokens,
            )
        )
        return strategy_update("select", result.candidates, result.confidence, started, usage, trace)

    return select
