"""The test-time training loop: AdamW on the shared schedule, with optional early stopping."""

from __future__ import annotations

import logging
from typing import Any

from models.schedule import Schedule, lr_at
from models.ttt.config import Job, TTTConfig, TTTResult
from models.ttt.data import _batch, episode_segments, training_sequences
from tasks.augment import augment_task

logger = logging.getLogger(__name__)


def train(job: Job, peft_model: Any) -> TTTResult:
    """Optimise the fresh adapter ``peft_model`` on ``job``'s demonstrations.

    Cosine schedule after 10 % warm-up. With ``early_stop`` (and three demonstrations or more)
    one demonstration is held back and the adapter ends at its best held-back evaluation.
    """
    import torch

    cfg, task = job.cfg, job.task
    held_back = job.rng.randrange(len(task.train)) if cfg.early_stop and len(task.train) >= 3 else None
    sequences = training_sequences(job.model, task, cfg, job.rng, views=job.views, held_back=held_back)
    device = next(peft_model.parameters()).device
    held_out = _held_back_batch(job, held_back, device)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = lr_schedule(cfg)
    result = TTTResult(answers=[], sequences=len(sequences))
    best: tuple[float, int, dict[str, Any]] | None = None  # (loss, step, LoRA weights)
    bad = 0
    if held_out is not None:
        best = (_eval_loss(peft_model, held_out), 0, _lora_weights(peft_model))
        result.held_back_losses.append((0, round(best[0], 4)))
    peft_model.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_at(step, schedule)
        picked = [sequences[(step * cfg.batch_size + i) % len(sequences)] for i in range(cfg.batch_size)]
        batch = {k: v.to(device) for k, v in _batch(job.tokenizer, picked, _pad_id(job)).items()}
        result.tokens_trained += int(batch["attention_mask"].sum())
        loss = peft_model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        result.losses.append(loss.item())
        result.steps_run = step + 1
        if job.on_step:
            job.on_step(step + 1, cfg.steps, result.losses[-1])
        if held_out is None or best is None or (step + 1) % cfg.eval_every:
            continue
        score = _eval_loss(peft_model, held_out)
        result.tokens_trained += int(held_out["attention_mask"].sum())
        result.held_back_losses.append((step + 1, round(score, 4)))
        if score < best[0] - 1e-4:
            best, bad = (score, step + 1, _lora_weights(peft_model)), 0
        else:
            bad += 1
        if bad >= cfg.patience and step + 1 >= cfg.min_steps and step + 1 < cfg.steps:
            result.stopped_early = True
            break
    if best is not None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(peft_model, best[2])  # the adapter at its best evaluation
        result.best_step = best[1]
    logger.debug(
        "ttt %s: %d/%d steps, held-back losses %s",
        task.id,
        result.steps_run,
        cfg.steps,
        result.held_back_losses,
    )
    return result


def lr_schedule(cfg: TTTConfig) -> Schedule:
    """10 % linear warm-up, then a cosine decay to 0 over the remaining steps.

    A multiplier of ``cfg.lr`` (peak 1): ``cfg.lr * lr_at(step, ...)`` are the rates these runs
    were measured with, to the last bit.
    """
    warmup = max(1, cfg.steps // 10)
    return Schedule(warmup=warmup, total=cfg.steps, decay_start=warmup, decay="cosine")


def _pad_id(job: Job) -> int:
    pad: int | None = job.tokenizer.pad_token_id
    return pad if pad is not None else 0


def _held_back_batch(job: Job, held_back: int | None, device: Any) -> dict[str, Any] | None:
    """The held-back demonstration after the others, under up to 4 training views (loss on its output)."""
    if held_back is None:
        return None
    task = job.task
    sequences = []
    for view in job.views[:4]:
        seen = augment_task(task, view)
        context = [j for j in range(len(task.train)) if j != held_back]
        job.rng.shuffle(context)
        demos = [seen.train[j] for j in [*context, held_back]]
        sequences.append(episode_segments(job.model, task, demos, loss_on="last"))
    return {k: v.to(device) for k, v in _batch(job.tokenizer, sequences, _pad_id(job)).items()}


def _eval_loss(peft_model: Any, batch: dict[str, Any]) -> float:
    import torch

    was_training = peft_model.training
    peft_model.eval()
    with torch.no_grad():
        loss = float(peft_model(**batch).loss)
    peft_model.train(was_training)
    return loss


def _lora_weights(peft_model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
