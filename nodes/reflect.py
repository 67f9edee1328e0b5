"""``reflect``: self-reflection into notes (Mockingbird, Jia et al. 2025).

The model predicts the task's own training examples, each held out from its context
(leave-one-out), compares its answers with the targets and turns what it got wrong into notes:

* a chat model (``model.renderer.name == "chat"``) reads its mistakes in a reflection prompt
  (``prompts/reflect.txt``) and writes one short rule-level note;
* a model that cannot write prose (the embedded compact model) keeps the mistakes themselves as
  correction notes (:func:`prompts.compact.correction_note`), which the compact renderer shows as
  corrected demonstrations nearest the query.

Rounds repeat while there are mistakes and something new to note, up to ``Context.reflect_rounds``;
a round's notes are kept only if the held-out accuracy does not drop. Kept notes go to the
long-term store (later queries and processes read them through ``prepare``) and the gain to the
task's evidence, so the router knows whether reflection paid on this task. The query is then
answered in context with the notes (:class:`nodes.icl.ICLPredictor`).

Held-out means held out: when a demonstration is predicted, corrections about that very
demonstration are left out of its prompt, otherwise the accuracy after reflection would be the
model copying its own notes. A chat model's rule note is written from all of a round's mistakes,
so its held-out gain can be optimistic (the note may mention the held-out example's rule).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import Context
from graph.memory import add_task_notes, task_evidence, update_evidence
from graph.state import State
from models.base import ModelBackend, PromptParts, Usage
from nodes.candidates import confidence
from nodes.common import (
    known_notes,
    measured_before,
    node_inputs,
    strategy_update,
    trace_event,
)
from nodes.icl import ICLPredictor, uses_views
from nodes.loo import leave_one_out
from prompts.compact import correction_note, parse_correction
from tasks.schema import Task
from tasks.scoring import is_correct

logger = logging.getLogger(__name__)

#: Longest note kept from a chat model's reflection (characters); longer replies are cut.
MAX_NOTE_CHARS = 400


class Mistake(BaseModel):
    """One wrong held-out prediction."""

    input: Any
    output: Any
    """The right output (the demonstration's target)."""
    answer: Any = None
    """What the model answered (``None`` when unparseable)."""
    text: str = ""
    """The model's raw completion."""


class LOOResult(BaseModel):
    """Leave-one-out accuracy of in-context prediction on the demonstrations, with given notes."""

    accuracy: float
    n: int
    mistakes: list[Mistake] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)


class ReflectionRound(BaseModel):
    """What one round tried and measured."""

    round: int
    tried: list[str]
    """Notes this round proposed."""
    accuracy: float
    """Held-out accuracy with the kept notes plus the proposed ones."""
    kept: bool


class ReflectionResult(BaseModel):
    """The outcome of reflection on a task."""

    notes: list[str]
    """Every note to use from now on: the ones given plus the kept new ones."""
    new_notes: list[str] = Field(default_factory=list)
    """The notes reflection added (kept rounds only)."""
    acc_before: float = 0.0
    acc_after: float = 0.0
    n: int = 0
    """Demonstrations the accuracies were measured on."""
    rounds: list[ReflectionRound] = Field(default_factory=list)
    stopped: str = ""
    """Why reflection ended, in words."""
    usage: Usage = Field(default_factory=Usage)

    @property
    def gain(self) -> float:
        """Held-out accuracy after reflection minus before."""
        return self.acc_after - self.acc_before


class Reflector:
    """Reflect on held-out mistakes and keep the notes that do not hurt (DSPy-style module)."""

    def __init__(self, model: ModelBackend) -> None:
        self.model = model
        self.prose = model.renderer.name == "chat"

    def evaluate(self, task: Task, notes: list[str], *, max_demos: int = 0, seed: int = 0) -> LOOResult:
        """Greedy leave-one-out prediction of every demonstration with ``notes``."""
        predictor = ICLPredictor(self.model)
        usage = Usage()
        mistakes: list[Mistake] = []
        for i, demo, rest, seen in leave_one_out(task, notes):
            candidates, gen = predictor.forward(
                rest, demo.input, notes=seen, samples=1, max_demos=max_demos, seed=seed + i
            )
            usage += gen.usage
            answer = candidates[0]["answer"] if candidates else None
            if not is_correct(task, answer, demo.output):
                text = gen.samples[0].text if gen.samples else ""
                mistakes.append(Mistake(input=demo.input, output=demo.output, answer=answer, text=text))
        n = len(task.train)
        return LOOResult(accuracy=(n - len(mistakes)) / n if n else 0.0, n=n, mistakes=mistakes, usage=usage)

    def write_notes(self, task: Task, notes: list[str], mistakes: list[Mistake]) -> tuple[list[str], Usage]:
        """Notes from ``mistakes``: a rule-level note (chat models) or the corrections themselves.

        A demonstration already corrected gets no second correction (the compact prompt would only
        repeat the same line), however it was wrong this time.
        """
        if not self.prose:
            corrected = [pair[0] for pair in map(parse_correction, notes) if pair is not None]
            written = [
                correction_note(m.input, m.output, m.answer if m.answer is not None else m.text.strip())
                for m in mistakes
                if m.input not in corrected
            ]
            return written, Usage()
        from prompts.chat import render_reflection

        parts = PromptParts(kind=task.kind, function=task.function, notes=notes, demos=task.train, query=None)
        wrong = [(m.input, m.answer if m.answer is not None else m.text, m.output) for m in mistakes]
        gen = self.model.generate(render_reflection(parts, wrong), n=1, temperature=0.0)
        note = _clean_note(gen.samples[0].text if gen.samples else "")
        return ([note] if note else []), gen.usage

    def forward(
        self, task: Task, notes: list[str], rounds: int, *, max_demos: int = 0, seed: int = 0
    ) -> ReflectionResult:
        """Run up to ``rounds`` rounds of reflection.

        Args:
            task: The task; its demonstrations are the held-out set.
            notes: Notes already in use (task file, store); kept as they are.
            rounds: Most rounds to run.
            max_demos: Demonstrations per prompt (0 = all the others).
            seed: Sampling seed.

        Returns:
            The notes to use and the held-out accuracies before and after.
        """
        base = self.evaluate(task, notes, max_demos=max_demos, seed=seed)
        usage = base.usage
        result = ReflectionResult(
            notes=list(notes), acc_before=base.accuracy, acc_after=base.accuracy, n=base.n
        )
        if base.n == 0:
            result.stopped = "no demonstrations to reflect on"
            return result.model_copy(update={"usage": usage})
        current = base
        for r in range(1, rounds + 1):
            if not current.mistakes:
                result.stopped = "no mistakes left"
                break
            proposed, spent = self.write_notes(task, result.notes, current.mistakes)
            usage += spent
            proposed = [n for n in proposed if n not in result.notes]
            if not proposed:
                result.stopped = "nothing new to note"
                break
            trial = self.evaluate(task, result.notes + proposed, max_demos=max_demos, seed=seed)
            usage += trial.usage
            kept = trial.accuracy >= current.accuracy
            result.rounds.append(ReflectionRound(round=r, tried=proposed, accuracy=trial.accuracy, kept=kept))
            if not kept:
                # A deterministic model would propose the same notes again: stop here.
                result.stopped = f"round {r} lowered held-out accuracy"
                break
            result.notes += proposed
            result.new_notes += proposed
            result.acc_after = trial.accuracy
            current = trial
        else:
            result.stopped = f"{rounds} rounds done"
        result.usage = usage
        return result


def _clean_note(text: str) -> str:
    """One line, without a leading "Note:" or bullet, at most :data:`MAX_NOTE_CHARS`."""
    line = " ".join(text.split()).strip()
    for prefix in ("Note:", "note:", "NOTE:", "- ", "* "):
        line = line.removeprefix(prefix).strip()
    return line[:MAX_NOTE_CHARS].strip()


def _stored_reflection(evidence: dict[str, Any], task: Task, model: ModelBackend) -> bool:
    """Whether this task was already reflected on with this model and these demonstrations."""
    return measured_before(evidence, "reflect_acc_after", "reflect", len(task.train), model.name)


def make_reflect_node(bound: ModelBackend | None = None) -> Any:  # a LangGraph node
    """Build the ``reflect`` node; ``bound`` fixes the model for this graph (else the context's)."""

    def reflect(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx, task, model, store = node_inputs(state, runtime, bound)
        notes = known_notes(state, store, task)
        evidence = task_evidence(store, task.key)
        trace: list[dict[str, Any]] = []
        usage = Usage()
        if _stored_reflection(evidence, task, model):
            trace.append(
                trace_event(
                    "reflect",
                    f"reusing {len(notes)} notes; reflection measured earlier: held-out "
                    f"{evidence['reflect_acc_before']:.2f} -> {evidence['reflect_acc_after']:.2f}",
                )
            )
        else:
            runtime.stream_writer({"node": "reflect", "message": f"reflecting with {model.name}"})
            result = Reflector(model).forward(
                task, notes, ctx.reflect_rounds, max_demos=ctx.max_demos, seed=ctx.seed
            )
            usage += result.usage
            trace.append(
                trace_event(
                    "reflect",
                    f"held-out accuracy before notes {result.acc_before:.2f} on {result.n} demonstrations",
                )
            )
            for rnd in result.rounds:
                trace.append(
                    trace_event(
                        "reflect",
                        f"round {rnd.round}: {len(rnd.tried)} notes, held-out accuracy "
                        f"{rnd.accuracy:.2f} ({'kept' if rnd.kept else 'discarded: accuracy dropped'})",
                    )
                )
            notes = result.notes
            if result.n:
                add_task_notes(store, task.key, result.new_notes)
                update_evidence(
                    store,
                    task.key,
                    reflect_gain=round(result.gain, 4),
                    reflect_acc_before=round(result.acc_before, 4),
                    reflect_acc_after=round(result.acc_after, 4),
                    reflect_n=result.n,
                    reflect_model=model.name,
                )
            trace.append(
                trace_event(
                    "reflect",
                    f"{result.stopped}; {len(result.new_notes)} notes added, gain {result.gain:+.2f}",
                    result.usage.total_tokens,
                )
            )
        candidates, gen = ICLPredictor(model).forward(
            task,
            state["query"]["input"],
            notes=notes,
            samples=ctx.samples,
            temperature=ctx.temperature,
            max_demos=ctx.max_demos,
            seed=ctx.seed,
            views=uses_views(ctx, task, model),
        )
        usage += gen.usage
        conf = confidence(candidates, len(gen.samples), probability=True)
        trace.append(
            trace_event(
                "reflect",
                f"answered with {len(notes)} notes: {len(candidates)} distinct answers from "
                f"{len(gen.samples)} samples, confidence {conf:.2f}",
                gen.usage.total_tokens,
            )
        )
        update = strategy_update("reflect", candidates, conf, started, usage, trace) | {"notes": notes}
        if notes == list(state.get("notes", [])):  # no note kept: ICL's very prompt, asked again
            update["attempts"][0]["repeat_of"] = "icl"
        return update

    return reflect
