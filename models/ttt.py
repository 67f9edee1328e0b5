"""Test-time training (Akyürek et al., ICML 2025): a temporary LoRA adapter per task.

1. Data from the demonstrations only: leave-one-out episodes (each demonstration in turn is the
   last one, the others, shuffled, before it), seen through invertible views (``tasks.augment``).
   A training sequence is the whole episode; the loss is on the last output only
   (``loss_on="last"``, the default) or on **every demonstration output after the first**
   (``loss_on="all"``, the paper's recipe), never on inputs. The default was chosen by
   measurement on the bundled synthetic families (54 tasks, 18 families, the embedded model):
   last 9/54 vs all 6/54 exact (4 tasks solved only by "last", 1 only by "all"); with three
   demonstrations, "all" also trains on the second output given a single demonstration, where
   the rule is often ambiguous.
2. A fresh LoRA adapter is trained on them through the backend's ``adapter()`` context, so the
   base weights are bit-identical afterwards. With ``early_stop``, one demonstration is held back
   as a target and training stops once its loss stops improving (see :class:`TTTConfig`).
3. The query is predicted under several views, each answer mapped back by its view's inverse,
   and the answers are voted on hierarchically; the vote share is the confidence. With
   ``augment=False``: the identity view only, for training and for one greedy prediction.
4. With ``cache`` > 0 the trained adapter is kept (:mod:`models.adapter_cache`) and a later query
   of the same task, demonstrations and settings reuses it instead of training.

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
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from models.adapter_cache import ADAPTERS, CachedAdapter, adapter_key
from models.base import CapabilityError, ModelBackend, PromptParts, Usage
from tasks.augment import Augmenter, Identity, augment_task, hierarchical_vote, sample_views
from tasks.schema import Example, Task

logger = logging.getLogger(__name__)

#: Called after each optimisation step with (step, steps, loss).
StepHook = Callable[[int, int, float], None]

#: A piece of a training sequence: its text and whether its tokens carry the loss.
Segment = tuple[str, bool]


@dataclass(kw_only=True)
class TTTConfig:
    """Settings of one test-time training run (defaults: the trial in the team notes).

    Early stopping (``early_stop``): one demonstration (drawn with ``seed``) is *held back as a
    target*: no training sequence ends with it and its output carries no loss, though it still
    appears as context, so episodes keep their length. Every ``eval_every`` steps the loss of its
    output given the other demonstrations (under the identity and a few training views) is
    measured; once it has not improved for ``patience`` evaluations in a row (and at least
    ``min_steps`` were run) training stops and the adapter goes back to its best evaluation. The
    held-back loss is a leave-one-out score of the adapter: the one signal of over-fitting that
    the demonstrations themselves can give. It needs three demonstrations (two left to train on);
    with fewer, training runs the full budget. Measured on the synthetic families (54 tasks): the
    same accuracy as the full 40 steps (9/54 both) in about 19 steps and ~40 % of the time.
    """

    r: int = 16  # LoRA rank
    alpha: int = 32  # LoRA alpha
    target_modules: str | list[str] = "all-linear"  # attention and MLP projections
    lr: float = 2e-3  # peak learning rate; cosine decay after 10 % warm-up
    weight_decay: float = 0.01  # AdamW, as in the paper
    steps: int = 40  # optimisation steps (the budget; early stopping may run fewer)
    batch_size: int = 8  # sequences per step
    train_views: int = 10  # views per leave-one-out episode (identity included)
    max_sequences: int = 250  # cap on training sequences per task (the paper's marc code)
    predict_views: int = 4  # views the query is predicted under
    loss_on: Literal["all", "last"] = "last"  # outputs that carry the loss (measured; module doc)
    episodes: Literal["loo", "loo+l2o"] = "loo"  # leave-one-out only, or leave-two-out episodes too
    augment: bool = True  # False: identity view only, for training and one greedy prediction
    early_stop: bool = False  # hold back one demonstration and stop when its loss stops improving
    eval_every: int = 5  # steps between held-back evaluations
    patience: int = 2  # evaluations without improvement before stopping
    min_steps: int = 10  # never stop before this many steps (warm-up makes early losses noisy)
    seed: int = 0  # every random choice derives from this
    cache: int = 0  # adapters kept in memory per base model (0 = no cache)
    cache_dir: str = ""  # also keep them here on disk ("" = memory only)

    def training_settings(self) -> dict[str, Any]:
        """The settings that change the trained adapter (the cache key's share of the config)."""
        out = asdict(self)
        for name in ("predict_views", "cache", "cache_dir"):
            out.pop(name)
        return out


@dataclass
class TTTResult:
    """What a test-time training run produced."""

    answers: list[tuple[Any, float]]  # (answer, vote share), best first (top-2 for pass@2)
    losses: list[float] = field(default_factory=list)  # training loss per step run
    sequences: int = 0  # training sequences built from the demonstrations
    seconds: float = 0.0  # wall time, training and prediction
    steps_run: int = 0  # optimisation steps actually run (0 when a cached adapter was reused)
    stopped_early: bool = False  # early stopping ended training before the budget
    best_step: int | None = None  # step of the best held-back evaluation (early stopping)
    held_back_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) per evaluation
    reused: bool = False  # a cached adapter answered; nothing was trained
    views: int = 0  # predictions voted on
    tokens_trained: int = 0  # tokens run forward and backward in training (held-back evaluations too)
    usage: Usage = field(default_factory=Usage)  # the predictions' token accounting


def leave_one_out(task: Task, rng: random.Random) -> list[tuple[list[Example], Example]]:
    """Each demonstration held out in turn, the others (in a shuffled order) as its context."""
    return [
        ([task.train[j] for j in context], task.train[i]) for context, i in _episodes(len(task.train), rng)
    ]


def _episodes(
    k: int, rng: random.Random, skip_target: int | None = None, kind: str = "loo"
) -> list[tuple[list[int], int]]:
    """Episodes as demonstration indices: (shuffled context, target last).

    ``loo``: each demonstration is the target once, all others its context. ``loo+l2o`` adds the
    leave-two-out episodes (each other demonstration dropped from the context in turn, where at
    least one remains), in fresh shuffled orders: more, shorter episodes from the same data.
    """
    out = []
    for i in range(k):
        context = [j for j in range(k) if j != i]
        rng.shuffle(context)
        if i != skip_target:
            out.append((context, i))
    if kind == "loo+l2o" and k >= 3:
        for i in range(k):
            for dropped in range(k):
                if i in (dropped, skip_target):
                    continue
                context = [j for j in range(k) if j not in (i, dropped)]
                rng.shuffle(context)
                out.append((context, i))
    return out


#: Named recipes: settings that override a run's :class:`TTTConfig` (``--ttt-recipe``).
#: ``trial`` is the recipe of the team's first TTT trial (NOTES): loss on every output, no early
#: stopping, at most 60 sequences from leave-one-out and leave-two-out episodes in several orders.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "trial": {"loss_on": "all", "early_stop": False, "episodes": "loo+l2o", "max_sequences": 60},
}


def with_recipe(cfg: TTTConfig, recipe: str) -> TTTConfig:
    """``cfg`` with the named recipe's settings applied.

    Raises:
        ValueError: If the recipe is unknown.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown TTT recipe {recipe!r}; known: {', '.join(RECIPES)}")
    return TTTConfig(**{**asdict(cfg), **RECIPES[recipe]})


def episode_segments(
    model: ModelBackend,
    task: Task,
    demos: list[Example],
    *,
    loss_on: Literal["all", "last"],
    no_loss: frozenset[int] = frozenset(),
) -> list[Segment]:
    """One training sequence: the demonstrations in order, the loss on their outputs.

    The last demonstration is written as the query plus its output (what the model is asked at
    inference). With ``loss_on="all"`` every output after the first carries the loss, except those
    at positions in ``no_loss`` (a held-back demonstration); this needs a renderer whose prompt
    for the first ``j`` demonstrations is a prefix of the prompt for more (the compact format is);
    for any other renderer (chat prompts) only the last output carries the loss.
    """

    def prompt(j: int) -> str:
        parts = PromptParts(
            kind=task.kind, function=task.function, notes=task.notes, demos=demos[:j], query=demos[j].input
        )
        return model.renderer.render(parts).text or ""

    def target(j: int) -> str:
        return model.renderer.format_value(demos[j].output, task.kind)

    last = len(demos) - 1
    whole = prompt(last)
    if loss_on == "last" or last < 2:
        return [(whole, False), (target(last), True)]
    full = whole + target(last)
    segments: list[Segment] = []
    pos = 0
    for j in range(1, last + 1):
        head, out = prompt(j), target(j)
        if len(head) < pos or not full.startswith(head + out):
            # Not prefix-consistent (e.g. chat messages, or correction notes placed after the
            # demonstrations): the outputs cannot be located, so only the last one is trained on.
            return [(whole, False), (target(last), True)]
        segments.append((head[pos:], False))
        segments.append((out, j not in no_loss or j == last))
        pos = len(head) + len(out)
    return segments


def training_sequences(
    model: ModelBackend,
    task: Task,
    cfg: TTTConfig,
    rng: random.Random,
    *,
    views: list[Augmenter] | None = None,
    held_back: int | None = None,
) -> list[list[Segment]]:
    """Training sequences: leave-one-out episodes x views, shuffled, capped at ``max_sequences``.

    Args:
        model: The backend (its renderer writes the sequences).
        task: The task whose demonstrations are used.
        cfg: The run's settings.
        rng: The RNG of every random choice (views, orders).
        views: The views to use (drawn from ``rng`` when ``None``).
        held_back: Index of a demonstration never used as a target (early stopping).
    """
    if views is None:
        views = _train_views(rng, task, cfg)
    sequences: list[list[Segment]] = []
    for view in views:
        seen = augment_task(task, view)
        for context, i in _episodes(len(task.train), rng, skip_target=held_back, kind=cfg.episodes):
            order = [*context, i]
            no_loss = frozenset(p for p, j in enumerate(order) if j == held_back)
            demos = [seen.train[j] for j in order]
            sequences.append(episode_segments(model, task, demos, loss_on=cfg.loss_on, no_loss=no_loss))
    rng.shuffle(sequences)
    return sequences[: cfg.max_sequences]


def training_pairs(
    model: ModelBackend, task: Task, cfg: TTTConfig, rng: random.Random
) -> list[tuple[str, str]]:
    """Training sequences as (untrained text, trained text) pairs, with the loss on the last output."""
    last_only = TTTConfig(**{**asdict(cfg), "loss_on": "last"})
    return [
        ("".join(t for t, _ in seq[:-1]), seq[-1][0])
        for seq in training_sequences(model, task, last_only, rng)
    ]


def _train_views(rng: random.Random, task: Task, cfg: TTTConfig) -> list[Augmenter]:
    return sample_views(rng, task, cfg.train_views) if cfg.augment else [Identity()]


def _batch(tokenizer: Any, sequences: list[list[Segment]], pad_id: int) -> dict[str, Any]:
    """Right-padded ids, with labels only on the segments that carry the loss."""
    import torch

    rows = []
    for seq in sequences:
        ids: list[int] = []
        labels: list[int] = []
        for n, (text, trained) in enumerate(seq):
            # Only the first piece gets the tokenizer's special tokens (its bos).
            piece = list(tokenizer(text, add_special_tokens=n == 0).input_ids) if text else []
            ids += piece
            labels += piece if trained else [-100] * len(piece)
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    ids_t = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels_t = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (seq_ids, lab) in enumerate(rows):
        ids_t[i, : len(seq_ids)] = torch.tensor(seq_ids)
        labels_t[i, : len(seq_ids)] = torch.tensor(lab)
        mask[i, : len(seq_ids)] = 1
    return {"input_ids": ids_t, "attention_mask": mask, "labels": labels_t}


def run_ttt(
    model: ModelBackend, task: Task, query: Any, cfg: TTTConfig, on_step: StepHook | None = None
) -> TTTResult:
    """Train a temporary adapter on ``task``'s demonstrations and answer ``query`` with votes.

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
    tokenizer: Any = getattr(model, "tokenizer", None)  # local backends only
    if tokenizer is None:
        raise CapabilityError(f"model {model.name!r} exposes no tokenizer to train with")
    started = time.perf_counter()
    key = adapter_key(task, cfg.training_settings()) if cfg.cache > 0 else ""
    # Looked up before the adapter is attached: the cache is keyed on the *base* weights.
    cached = ADAPTERS.get(model, key, capacity=cfg.cache, directory=cfg.cache_dir) if key else None
    rng = random.Random(cfg.seed)
    views = _train_views(rng, task, cfg)
    predict_views: list[Augmenter] = (
        sample_views(rng, task, cfg.predict_views) if cfg.augment else [Identity()]
    )
    # LoRA's initial weights come from torch's global RNG: seed it privately (reproducible runs,
    # the caller's RNG state untouched).
    on_cpu = str(getattr(model, "device", "cpu")) == "cpu"
    with torch.random.fork_rng(devices=[] if on_cpu else None):
        torch.manual_seed(cfg.seed)
        result = _adapt_and_predict(model, task, query, cfg, key, cached, views, predict_views, on_step, rng)
    result.views = len(predict_views)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _adapt_and_predict(
    model: ModelBackend,
    task: Task,
    query: Any,
    cfg: TTTConfig,
    key: str,
    cached: CachedAdapter | None,
    views: list[Augmenter],
    predict_views: list[Augmenter],
    on_step: StepHook | None,
    rng: random.Random,
) -> TTTResult:
    """Inside a fresh adapter: load the cached weights or train (and cache), then predict."""
    tokenizer: Any = getattr(model, "tokenizer", None)  # checked by run_ttt
    lora = {"r": cfg.r, "lora_alpha": cfg.alpha, "target_modules": cfg.target_modules}
    with model.adapter(**lora) as peft_model:
        if cached is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(peft_model, cached.weights)
            result = TTTResult(answers=[], reused=True, **_meta_fields(cached.meta))
        else:
            result = _train(peft_model, tokenizer, model, task, cfg, rng, views, on_step)
            if key:
                from peft import get_peft_model_state_dict

                state = get_peft_model_state_dict(peft_model)
                weights = {k: v.detach().to("cpu").clone() for k, v in state.items()}
                ADAPTERS.put(
                    model, key, CachedAdapter(weights=weights, meta=_meta(result)),
                    capacity=cfg.cache, directory=cfg.cache_dir,
                )  # fmt: skip
        peft_model.eval()
        result.answers, result.usage = _predict(model, task, query, predict_views)
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


def _train(
    peft_model: Any,
    tokenizer: Any,
    model: ModelBackend,
    task: Task,
    cfg: TTTConfig,
    rng: random.Random,
    views: list[Augmenter],
    on_step: StepHook | None,
) -> TTTResult:
    """The optimisation loop (AdamW, cosine schedule with 10 % warm-up, optional early stopping)."""
    import torch

    held_back = rng.randrange(len(task.train)) if cfg.early_stop and len(task.train) >= 3 else None
    sequences = training_sequences(model, task, cfg, rng, views=views, held_back=held_back)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(peft_model.parameters()).device
    held_out = _held_back_batch(model, task, tokenizer, pad_id, rng, views, held_back, device)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 10)
    result = TTTResult(answers=[], sequences=len(sequences))
    best: tuple[float, int, dict[str, Any]] | None = None  # (loss, step, LoRA weights)
    bad = 0
    if held_out is not None:
        best = (_eval_loss(peft_model, held_out), 0, _lora_weights(peft_model))
        result.held_back_losses.append((0, round(best[0], 4)))
    peft_model.train()
    for step in range(cfg.steps):
        scale = (
            (step + 1) / warmup
            if step < warmup
            else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))
        )
        for group in opt.param_groups:
            group["lr"] = cfg.lr * scale
        picked = [sequences[(step * cfg.batch_size + i) % len(sequences)] for i in range(cfg.batch_size)]
        batch = {k: v.to(device) for k, v in _batch(tokenizer, picked, pad_id).items()}
        result.tokens_trained += int(batch["attention_mask"].sum())
        loss = peft_model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        result.losses.append(loss.item())
        result.steps_run = step + 1
        if on_step:
            on_step(step + 1, cfg.steps, result.losses[-1])
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


def _held_back_batch(
    model: ModelBackend,
    task: Task,
    tokenizer: Any,
    pad_id: int,
    rng: random.Random,
    views: list[Augmenter],
    held_back: int | None,
    device: Any,
) -> dict[str, Any] | None:
    """The held-back demonstration after the others, under up to 4 training views (loss on its output)."""
    if held_back is None:
        return None
    sequences = []
    for view in views[:4]:
        seen = augment_task(task, view)
        context = [j for j in range(len(task.train)) if j != held_back]
        rng.shuffle(context)
        demos = [seen.train[j] for j in [*context, held_back]]
        sequences.append(episode_segments(model, task, demos, loss_on="last"))
    return {k: v.to(device) for k, v in _batch(tokenizer, sequences, pad_id).items()}


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


def _predict(
    model: ModelBackend, task: Task, query: Any, views: list[Augmenter]
) -> tuple[list[tuple[Any, float]], Usage]:
    """Greedy answers under each view, mapped back by its inverse, hierarchically voted (and the
    generations' token accounting).

    With one view there is nothing to vote on, and a share of 1 would say nothing: the answer's
    confidence is then its sequence probability under the model (``exp`` of its log-probability),
    when the backend reports it.
    """
    votes: list[tuple[str, Any]] = []
    logprob: float | None = None
    usage = Usage()
    for view in views:
        seen = augment_task(task.model_copy(update={"test": []}), view)
        shown = view.apply(query) if task.kind == "grid" else query
        parts = PromptParts(
            kind=task.kind, function=task.function, notes=task.notes, demos=seen.train, query=shown
        )
        gen = model.generate(model.renderer.render(parts), n=1, temperature=0.0)
        usage += gen.usage
        logprob = gen.samples[0].logprob
        answer = model.renderer.parse(gen.samples[0].text, task.kind)
        if answer is not None and task.kind == "grid":
            try:
                answer = view.inverse(answer)
            except ValueError:  # a ragged answer cannot be transposed back
                answer = None
        votes.append((view.family, answer))
    ranked = hierarchical_vote(votes)
    if len(views) == 1 and ranked and logprob is not None:
        ranked = [(ranked[0][0], round(math.exp(min(0.0, logprob)), 4))]
    return ranked, usage
