"""``ttt``: test-time training (a temporary LoRA adapter per task, augmented voting).

The heavy lifting is in :mod:`models.ttt`; this node maps the run's knobs to a
:class:`~models.ttt.TTTConfig` (``ttt_augment``, ``ttt_early_stop``, ``ttt_cache``,
``ttt_cache_dir`` included), streams training progress (step, loss) to the trace, says when
early stopping ended training (the steps actually run) or when a cached adapter was reused, and
turns the vote into candidates and a confidence (the top answer's vote share; on a
classification table its averaged probability).
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import Candidate, State
from models import ttt as ttt_lib  # called through the module: fault injection patches it there
from models.base import ModelBackend, Usage
from models.ttt import PRIOR_SHARE, TTTConfig, TTTResult, prior_votes_for, recipe_for, with_recipe
from nodes.common import node_inputs, strategy_update


def make_ttt_node(
    bound: ModelBackend | None = None,
) -> Any:  # a LangGraph node (its overloads reject a Callable type)
    """Build the ``ttt`` node; ``bound`` fixes the model for this graph (else the context's)."""

    def ttt(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx, task, model, _ = node_inputs(state, runtime, bound)
        task = task.model_copy(update={"notes": state.get("notes", task.notes)})
        cfg = config_from_context(ctx, task.kind)

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

        result = ttt_lib.run_ttt(model, task, state["query"]["input"], cfg, on_step=progress)
        if result.stopped_early and not result.reused:
            runtime.stream_writer(
                {
                    "node": "ttt",
                    "message": f"stopped early after {result.steps_run}/{cfg.steps} steps: the held-back "
                    f"demonstration's loss last improved at step {result.best_step}; kept that adapter",
                }
            )
        candidates = [
            # With one view the share is a probability, not a count of votes: one vote.
            Candidate(answer=a, text="", votes=max(1, round(share * result.views)), logprob=None)
            for a, share in result.answers
        ]
        conf = result.answers[0][1] if result.answers else 0.0
        # Tokens a local model ran: training (forward and backward) plus the voted predictions.
        usage = result.usage + Usage(prompt_tokens=result.tokens_trained)
        trace = [{"node": "ttt", "message": summary(cfg, result, conf)}]
        return strategy_update("ttt", candidates, conf, started, usage, trace)

    return ttt


def config_from_context(ctx: Context, kind: str = "grid") -> TTTConfig:
    """The run's knobs as TTT settings for a ``kind`` task (LoRA alpha = 2 x rank; the cache only
    where it is on).

    A named recipe (``ttt_recipe``) overrides the settings it names (e.g. ``adaptive`` turns early
    stopping on and ``trial`` turns it off whatever ``ttt_early_stop`` says); ``by-kind``, the
    default, is the recipe measured best on held-out tasks of the kind (``adaptive``; ``plain``
    for tables). The prior's votes (``ttt_prior_votes``) likewise: ``by-kind`` is on for tables,
    off elsewhere (:data:`models.ttt.config.KIND_PRIOR_VOTES`).
    """
    cfg = TTTConfig(
        steps=ctx.ttt_steps,
        lr=ctx.ttt_lr,
        r=ctx.ttt_rank,
        alpha=2 * ctx.ttt_rank,
        predict_views=ctx.ttt_views,
        augment=ctx.ttt_augment,
        prior_votes=prior_votes_for(ctx.ttt_prior_votes, kind),
        early_stop=ctx.ttt_early_stop,
        cache=ctx.ttt_cache,
        cache_dir=ctx.ttt_cache_dir,
        seed=ctx.seed,
    )
    return with_recipe(cfg, recipe_for(ctx.ttt_recipe, kind))


def summary(cfg: TTTConfig, result: TTTResult, conf: float) -> str:
    """The trace line of one TTT run: how the adapter came about, then how the answer was chosen."""
    if result.reused:
        how = f"reused cached adapter r={cfg.r} (trained earlier on {result.sequences} sequences)"
    else:
        first, last = (result.losses[0], result.losses[-1]) if result.losses else (0.0, 0.0)
        stop = f" (stopped early, best at step {result.best_step})" if result.stopped_early else ""
        how = (
            f"adapter r={cfg.r} on {result.sequences} sequences, {result.steps_run}/{cfg.steps} steps{stop}, "
            f"loss {first:.3f} -> {last:.3f}"
        )
    half = result.views // 2
    if result.averaged:
        prior = f" and {half} of the prior (its share {PRIOR_SHARE:.2f})" if result.prior else ""
        n = half if result.prior else result.views
        vote = f"label probabilities averaged over {n} views of the adapter{prior}, top {conf:.2f}"
    elif result.prior:
        vote = f"{half} views of the adapter and {half} of the prior voted, top share {conf:.2f}"
    elif result.views > 1:
        vote = f"{result.views} views voted, top share {conf:.2f}"
    else:
        vote = f"one greedy prediction (no augmentation), probability {conf:.2f}"
    return f"{how}; {vote}"
