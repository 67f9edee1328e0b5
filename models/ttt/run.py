"""One test-time training run: checks, views, a fresh adapter (cached or trained), the vote."""

from __future__ import annotations

import random
import time
from typing import Any

from models.adapter_cache import ADAPTERS, CachedAdapter, adapter_key
from models.base import CapabilityError, ModelBackend, Usage
from models.ttt.config import Job, StepHook, TTTConfig, TTTResult
from models.ttt.data import draw_views, fold_corrections
from models.ttt.loop import train
from models.ttt.predict import rank, view_votes
from tasks.schema import Task


def run_ttt(
    model: ModelBackend, task: Task, query: Any, cfg: TTTConfig, on_step: StepHook | None = None
) -> TTTResult:
    """Train a temporary adapter on ``task``'s demonstrations and answer ``query`` with votes.

    Correction notes are folded into the demonstrations first (:func:`fold_corrections`).

    With ``cfg.cache`` > 0 an adapter trained earlier for the same task id, demonstrations, notes
    and training settings on the same base model is reused (``reused`` in the result, no steps
    run); a newly trained one is stored.

    Raises:
        CapabilityError: If the backend cannot adapt (remote models), or the task has fewer than
            two demonstrations (leave-one-out needs one to hold out and one to learn from).
    """
    import torch

    if not model.capabilities.adapt:
        raise CapabilityError(f"model {model.name!r} cannot adapt: test-time training needs a local model")
    if len(task.train) < 2:
        raise CapabilityError(f"task {task.id!r} has {len(task.train)} demonstrations; TTT needs at least 2")
    if getattr(model, "tokenizer", None) is None:  # local backends only
        raise CapabilityError(f"model {model.name!r} exposes no tokenizer to train with")
    started = time.perf_counter()
    task = fold_corrections(task)
    key = adapter_key(task, cfg.training_settings()) if cfg.cache > 0 else ""
    # Looked up before the adapter is attached: the cache is keyed on the *base* weights.
    cached = ADAPTERS.get(model, key, capacity=cfg.cache, directory=cfg.cache_dir) if key else None
    rng = random.Random(cfg.seed)
    views = draw_views(rng, task, cfg, cfg.train_views)
    predict_views = draw_views(rng, task, cfg, cfg.predict_views)
    job = Job(
        model=model, task=task, query=query, cfg=cfg, rng=rng,
        views=views, predict_views=predict_views, on_step=on_step,
    )  # fmt: skip
    # LoRA's initial weights come from torch's global RNG: seed it privately (reproducible runs,
    # the caller's RNG state untouched).
    on_cpu = str(getattr(model, "device", "cpu")) == "cpu"
    with torch.random.fork_rng(devices=[] if on_cpu else None):
        torch.manual_seed(cfg.seed)
        result = _adapt_and_predict(job, key, cached)
    result.views = len(predict_views) * (2 if _prior_votes(job) else 1)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _prior_votes(job: Job) -> bool:
    """Whether the prior votes on this query: asked for, and the adapter predicts under more than
    one view. Under a single view the prior's one answer is the base model's greedy answer, which
    the router already holds as ICL's; a second vote there would halve the adapter's share (its
    confidence) and could only tie with it, never outvote it."""
    return job.cfg.prior_voting and len(job.predict_views) > 1


def _adapt_and_predict(job: Job, key: str, cached: CachedAdapter | None) -> TTTResult:
    """Inside a fresh adapter: load the cached weights or train (and cache under ``key``), then
    predict; with ``prior_votes`` the base model predicts first (no adapter yet) and votes too."""
    cfg, model = job.cfg, job.model
    prior, _, prior_usage = view_votes(job) if _prior_votes(job) else ([], None, Usage())
    lora = {"r": cfg.r, "lora_alpha": cfg.alpha, "target_modules": cfg.target_modules}
    with model.adapter(**lora) as peft_model:
        if cached is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(peft_model, cached.weights)
            result = TTTResult(answers=[], reused=True, **_meta_fields(cached.meta))
        else:
            result = train(job, peft_model)
            if key:
                from peft import get_peft_model_state_dict

                state = get_peft_model_state_dict(peft_model)
                weights = {k: v.detach().to("cpu").clone() for k, v in state.items()}
                ADAPTERS.put(
                    model, key, CachedAdapter(weights=weights, meta=_meta(result)),
                    capacity=cfg.cache, directory=cfg.cache_dir,
                )  # fmt: skip
        peft_model.eval()
        votes, logprob, usage = view_votes(job)
        result.answers = rank(votes, logprob=logprob, prior=prior)
        result.usage = usage + prior_usage
    return result


def _meta(result: TTTResult) -> dict[str, Any]:
    """What a cached adapter remembers of its training (shown when it is reused)."""
    return {
        "sequences": result.sequences,
        "trained_steps": result.steps_run,
        "stopped_early": result.stopped_early,
        "best_step": result.best_step,
        "final_loss": result.losses[-1] if result.losses else None,
    }


def _meta_fields(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "sequences": int(meta.get("sequences", 0)),
        "stopped_early": bool(meta.get("stopped_early", False)),
        "best_step": meta.get("best_step"),
    }
