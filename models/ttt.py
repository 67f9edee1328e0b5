"""Test-time training (Akyürek et al., ICML 2025): a temporary LoRA adapter per task.

1. Data from the demonstrations only: leave-one-out episodes (each demonstration in turn is the
   query, the others, shuffled, the context), seen through invertible views (``tasks.augment``).
2. A fresh LoRA adapter is trained on them (loss on the held-out output), through the backend's
   ``adapter()`` context, so the base weights are bit-identical afterwards.
3. The query is predicted under several views, each answer mapped back by its view's inverse,
   and the answers are voted on hierarchically; the vote share is the confidence.

Example::

    result = run_ttt(backend, task, query_input, TTTConfig(steps=40))
    result.answers[0]  # (answer, share), best first
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.base import CapabilityError, ModelBackend, PromptParts
from tasks.augment import Augmenter, augment_task, hierarchical_vote, sample_views
from tasks.schema import Example, Task

logger = logging.getLogger(__name__)

#: Called after each optimisation step with (step, steps, loss).
StepHook = Callable[[int, int, float], None]


@dataclass(kw_only=True)
class TTTConfig:
    """Settings of one test-time training run (defaults: the trial in the team notes)."""

    r: int = 16  # LoRA rank
    alpha: int = 32  # LoRA alpha
    target_modules: str | list[str] = "all-linear"  # attention and MLP projections
    lr: float = 2e-3  # peak learning rate; cosine decay after 10 % warm-up
    weight_decay: float = 0.01  # AdamW, as in the paper
    steps: int = 40  # optimisation steps
    batch_size: int = 8  # sequences per step
    train_views: int = 10  # views per leave-one-out episode (identity included)
    max_sequences: int = 250  # cap on training sequences per task (the paper's marc code)
    predict_views: int = 4  # views the query is predicted under
    seed: int = 0  # every random choice derives from this


@dataclass
class TTTResult:
    """What a test-time training run produced."""

    answers: list[tuple[Any, float]]  # (answer, vote share), best first (top-2 for pass@2)
    losses: list[float] = field(default_factory=list)  # training loss per step
    sequences: int = 0  # training sequences built from the demonstrations
    seconds: float = 0.0  # wall time, training and prediction


def leave_one_out(task: Task, rng: random.Random) -> list[tuple[list[Example], Example]]:
    """Each demonstration held out in turn, the others (in a shuffled order) as its context."""
    episodes = []
    for i, held in enumerate(task.train):
        context = [e for j, e in enumerate(task.train) if j != i]
        rng.shuffle(context)
        episodes.append((context, held))
    return episodes


def training_pairs(
    model: ModelBackend, task: Task, cfg: TTTConfig, rng: random.Random
) -> list[tuple[str, str]]:
    """(prompt text, target text) pairs: leave-one-out episodes x views, capped."""
    pairs: list[tuple[str, str]] = []
    for view in sample_views(rng, task, cfg.train_views):
        seen = augment_task(task, view)
        for context, held in leave_one_out(seen, rng):
            parts = PromptParts(
                kind=task.kind, function=task.function, notes=task.notes, demos=context, query=held.input
            )
            prompt = model.renderer.render(parts)
            pairs.append((prompt.text or "", model.renderer.format_value(held.output, task.kind)))
    rng.shuffle(pairs)
    return pairs[: cfg.max_sequences]


def _batch(tokenizer: Any, pairs: list[tuple[str, str]], pad_id: int) -> dict[str, Any]:
    """Right-padded ids with labels only on the target tokens."""
    import torch

    rows = []
    for prompt, target in pairs:
        p = tokenizer(prompt).input_ids
        t = tokenizer(target, add_special_tokens=False).input_ids
        rows.append((p + t, [-100] * len(p) + t))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (seq, lab) in enumerate(rows):
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, : len(seq)] = torch.tensor(lab)
        mask[i, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def run_ttt(
    model: ModelBackend, task: Task, query: Any, cfg: TTTConfig, on_step: StepHook | None = None
) -> TTTResult:
    """Train a temporary adapter on ``task``'s demonstrations and answer ``query`` with votes.

    Raises:
        CapabilityError: If the backend cannot adapt (remote models), or the task has fewer than
            two demonstrations (leave-one-out needs one to hold out and one to learn from).
    """
    import torch

    if not model.capabilities.adapt:
        raise CapabilityError(f"model {model.name!r} cannot adapt: test-time training needs a local model")
    if len(task.train) < 2:
        raise CapabilityError(f"task {task.id!r} has {len(task.train)} demonstrations; TTT needs at least 2")
    started = time.perf_counter()
    rng = random.Random(cfg.seed)
    pairs = training_pairs(model, task, cfg, rng)
    tokenizer: Any = getattr(model, "tokenizer", None)  # local backends only
    if tokenizer is None:
        raise CapabilityError(f"model {model.name!r} exposes no tokenizer to train with")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    losses: list[float] = []
    with model.adapter(r=cfg.r, lora_alpha=cfg.alpha, target_modules=cfg.target_modules) as peft_model:
        params = [p for p in peft_model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = max(1, cfg.steps // 10)
        peft_model.train()
        for step in range(cfg.steps):
            scale = (
                (step + 1) / warmup
                if step < warmup
                else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))
            )
            for group in opt.param_groups:
                group["lr"] = cfg.lr * scale
            batch = _batch(
                tokenizer,
                [pairs[(step * cfg.batch_size + i) % len(pairs)] for i in range(cfg.batch_size)],
                pad_id,
            )
            batch = {k: v.to(next(peft_model.parameters()).device) for k, v in batch.items()}
            loss = peft_model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if on_step:
                on_step(step + 1, cfg.steps, losses[-1])
        peft_model.eval()
        answers = _predict(model, task, query, sample_views(rng, task, cfg.predict_views))
    return TTTResult(
        answers=answers, losses=losses, sequences=len(pairs), seconds=round(time.perf_counter() - started, 3)
    )


def _predict(model: ModelBackend, task: Task, query: Any, views: list[Augmenter]) -> list[tuple[Any, float]]:
    """Greedy answers under each view, mapped back by its inverse, hierarchically voted."""
    votes: list[tuple[str, Any]] = []
    for view in views:
        seen = augment_task(task.model_copy(update={"test": []}), view)
        shown = view.apply(query) if task.kind == "grid" else query
        parts = PromptParts(
            kind=task.kind, function=task.function, notes=task.notes, demos=seen.train, query=shown
        )
        gen = model.generate(model.renderer.render(parts), n=1, temperature=0.0)
        answer = model.renderer.parse(gen.samples[0].text, task.kind)
        if answer is not None and task.kind == "grid":
            try:
                answer = view.inverse(answer)
            except ValueError:  # a ragged answer cannot be transposed back
                answer = None
        votes.append((view.family, answer))
    return hierarchical_vote(votes)
