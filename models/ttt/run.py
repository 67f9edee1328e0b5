"""One test-time training run: checks, views, a fresh adapter (cached or trained), the vote."""

from __future__ import annotations

import random
import time
from typing import Any

from models.adapter_cache import ADAPTERS, CachedAdapter, adapter_key
from models.base import CapabilityError, ModelBackend, Usage
from models.ttt.config import PRIOR_SHARE, Job, StepHook, TTTConfig, TTTResult
from models.ttt.data import draw_views, fold_corrections
from models.ttt.loop import train
from models.ttt.predict import LabelDistribution, averages_views, label_distribution, rank, view_votes
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
    result.prior = _prior_votes(job)
    result.views = len(predict_views) * (2 if result.prior else 1)
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
    if averages_views(job.task, model):
        return _adapt_and_average(job, key, cached)
    prior, _, prior_usage = view_votes(job) if _prior_votes(job) else ([], None, Usage())
    with model.adapter(**_lora(cfg)) as peft_model:
        result = _adapter(job, peft_model, key, cached)
        votes, logprob, usage = view_votes(job)
        result.answers = rank(votes, logprob=logprob, prior=prior)
        result.usage = usage + prior_usage
    return result


def _adapt_and_average(job: Job, key: str, cached: CachedAdapter | None) -> TTTResult:
    """A classification table: the adapter's label probabilities averaged over the predict views
    (:func:`label_distribution`, as ICL averages the base model's); with ``prior_votes`` the base
    model's under the same views are mixed in at :data:`PRIOR_SHARE`. The answers' shares are
    probabilities."""
    prior = _distribution(job) if _prior_votes(job) else None
    with job.model.adapter(**_lora(job.cfg)) as peft_model:
        result = _adapter(job, peft_model, key, cached)
        own = _distribution(job)
    dist = own.mixed(prior, PRIOR_SHARE) if prior is not None else own
    result.answers = [(label, round(prob, 4)) for label, prob in dist.ranked()]
    result.usage, result.averaged = dist.usage, True
    return result


def _distribution(job: Job) -> LabelDistribution:
    """The current weights' label distribution for ``job.query`` over ``job.predict_views``."""
    return label_distribution(job.model, job.task, job.query, job.predict_views, job.task.notes)


def _lora(cfg: TTTConfig) -> dict[str, Any]:
    """The LoRA settings of a run's adapter."""
    return {"r": cfg.r, "lora_alpha": cfg.alpha, "target_modules": cfg.target_modules}


def _adapter(job: Job, peft_model: Any, key: str, cached: CachedAdapter | None) -> TTTResult:
    """Load the cached adapter's weights into ``peft_model``, or train it (and cache it under
    ``key``); the model is left in eval mode, ready to predict."""
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
                job.model, key, CachedAdapter(weights=weights, meta=_meta(result)),
                capacity=job.cfg.cache, directory=job.cfg.cache_dir,
            )  # fmt: skip
    peft_model.eval()
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
