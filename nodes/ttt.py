"""``ttt``: test-time training (a temporary LoRA adapter per task, augmented voting).

The heavy lifting is in :mod:`models.ttt`; this node maps the run's knobs to a
:class:`~models.ttt.TTTConfig`, streams training progress (step, loss) to the trace, and turns
the vote into candidates and a confidence (the top answer's vote share).
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import Candidate, State
from models.base import ModelBackend
from models.ttt import TTTConfig, run_ttt
from nodes.common import cost_entry, get_context, resolve_model
from tasks.schema import Task


def make_ttt_node(
    bound: ModelBackend | None = None,
) -> Any:  # a LangGraph node (its overloads reject a Callable type)
    """Build the ``ttt`` node; ``bound`` fixes the model for this graph (else the context's)."""

    def ttt(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx = get_context(runtime)
        model = resolve_model(ctx, bound)
        task = Task.model_validate(state["task"])
        task = task.model_copy(update={"notes": state.get("notes", task.notes)})
        cfg = TTTConfig(
            steps=ctx.ttt_steps,
            lr=ctx.ttt_lr,
            r=ctx.ttt_rank,
            alpha=2 * ctx.ttt_rank,
            predict_views=ctx.ttt_views,
            seed=ctx.seed,
        )

        def progress(step: int, steps: int, loss: float) -> None:
            runtime.stream_writer(
                {
                    "node": "ttt",
                    "step": step,
                    "steps": steps,
                    "loss": round(loss, 4),
                    "message": f"training adapter: step {step}/{steps}, loss {loss:.3f}",
                }
            )

        result = run_ttt(model, task, state["query"]["input"], cfg, on_step=progress)
        candidates = [
            Candidate(answer=a, text="", votes=round(share * cfg.predict_views), logprob=None)
            for a, share in result.answers
        ]
        conf = result.answers[0][1] if result.answers else 0.0
        first, last = (result.losses[0], result.losses[-1]) if result.losses else (0.0, 0.0)
        return {
            "candidates": candidates,
            "answer": candidates[0]["answer"] if candidates else None,
            "confidence": conf,
            "costs": [cost_entry("ttt", started)],
            "trace": [
                {
                    "node": "ttt",
                    "message": f"adapter r={cfg.r} on {result.sequences} sequences, {cfg.steps} steps, "
                    f"loss {first:.3f} -> {last:.3f}; {cfg.predict_views} views voted, top share {conf:.2f}",
                }
            ],
        }

    return ttt
