"""Train the embedded model on procedural 1-D grid tasks.

Command (what produced the shipped checkpoint; fixed seed, reproducible up to thread timing)::

    python -m models.train --out models/checkpoints/embedded --minutes 22 --seed 0

``--smoke`` trains a tiny model for a few steps (a test runs it). Episodes are drawn on the fly
from ``tasks.generators`` and written with ``prompts.compact`` (the format the model reads at
inference): 2-4 demonstrations and a query, loss on every output cell and the newline that ends
it, never on inputs (so one episode trains predictions after 0, 1, 2, ... demonstrations). Rows
start short (6-12 cells) and grow to 6-30 over the first half of the budget (a curriculum:
copying input cell i to output cell i is easiest to discover when few row lengths occur).
With a time budget the step count depends on the machine's speed.

At the end the script measures the output loss after 0, 1, 2 and 3 demonstrations on the same
queries (the signature of in-context learning), held-in exact match through
:class:`models.hf_backend.HFBackend` and, when the folder exists, 1D-ARC per type (``--eval-arc``);
it prints a report and stores it in ``mockingbird.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.embedded import EmbeddedConfig, build_model, config_dict, save_checkpoint
from models.tokenizer import vocabulary
from prompts.compact import encode_pair, encode_query
from tasks.generators import FAMILIES, sample_task
from tasks.schema import Task

logger = logging.getLogger("models.train")
#: The shared 1D-ARC folder beside the repository (measured after training when present).
DEFAULT_ARC = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "1d-arc"


@dataclass(kw_only=True)
class TrainConfig:
    """Training settings."""

    model: EmbeddedConfig = field(default_factory=EmbeddedConfig)  # the model's shape
    batch_size: int = 16  # episodes per step
    lr: float = 2e-3  # peak learning rate (small models like it high)
    weight_decay: float = 0.01  # AdamW decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10 %
    minutes: float = 20.0  # wall-clock budget; the schedule is laid out for this time
    max_steps: int = 0  # stop after this many steps too (0 = only the time budget)
    min_demos: int = 2  # demonstrations per episode drawn from min_demos..max_demos; the loss on
    max_demos: int = 4  # every output already covers 0..k demonstrations of context in one episode
    compose_p: float = 0.2  # share of two-rule compositions
    start_lengths: tuple[int, int] = (6, 12)  # row lengths at the start (short: copying is easy)
    lengths: tuple[int, int] = (6, 30)  # row lengths once the curriculum is over
    curriculum: float = 0.5  # share of the budget over which the longest row grows to lengths[1]
    indexed: bool = False  # indexed serialization (prompts/compact.py): copying becomes induction
    eval_tasks: int = 100  # fresh episodes for held-in accuracy and the demos table
    threads: int = 2  # torch CPU threads
    seed: int = 0  # everything random derives from this


def encode_episode(task: Task, vocab: dict[str, int], indexed: bool = False) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (1 on every output token and its newline) of one episode.

    Demonstrations are the task's train pairs, the query its first test pair with its target.
    """
    ids, mask = [vocab["<bos>"]], [0]
    pairs = [(e.input, e.output) for e in task.train] + [(q.input, q.target) for q in task.test[:1]]
    for inp, out in pairs:
        line = encode_pair(inp, out, task.kind, indexed)
        head = len(encode_query(inp, task.kind, indexed))
        for i, ch in enumerate(line):
            ids.append(vocab.get(ch, vocab["<unk>"]))
            mask.append(1 if i >= head else 0)
    return ids, mask


def make_batch(episodes: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors; labels are -100 where the loss is off."""
    import torch

    width = max(len(ids) for ids, _ in episodes)
    input_ids = torch.full((len(episodes), width), pad_id, dtype=torch.long)
    labels = torch.full((len(episodes), width), -100, dtype=torch.long)
    attention = torch.zeros((len(episodes), width), dtype=torch.long)
    for row, (ids, mask) in enumerate(episodes):
        t = torch.tensor(ids)
        input_ids[row, : len(ids)] = t
        attention[row, : len(ids)] = 1
        labels[row, : len(ids)] = torch.where(torch.tensor(mask) == 1, t, torch.tensor(-100))
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def lengths_at(progress: float, cfg: TrainConfig) -> tuple[int, int]:
    """Row-length range at ``progress`` (0..1) of the budget: the longest row grows linearly.

    Short rows first: the output cell that copies input cell i sits a row length away, and with
    few row lengths that distance is easy to find; longer rows come once the format is learned.
    """
    ramp = 1.0 if cfg.curriculum <= 0 else min(1.0, progress / cfg.curriculum)
    lo = round(cfg.start_lengths[0] + ramp * (cfg.lengths[0] - cfg.start_lengths[0]))
    hi = round(cfg.start_lengths[1] + ramp * (cfg.lengths[1] - cfg.start_lengths[1]))
    return lo, max(lo, hi)


def episode_batches(
    rng: random.Random,
    cfg: TrainConfig,
    vocab: dict[str, int],
    progress: Callable[[], float],
    pool: int = 8,
) -> Iterator[list[tuple[list[int], list[int]]]]:
    """Endless batches of encoded episodes, grouped by length.

    Episodes range from ~30 to ~600 tokens; padding a random batch to its longest wastes about
    half the compute, so ``pool`` batches are drawn at once, sorted by length and served in a
    random order. ``progress()`` (0..1) sets the row lengths of the curriculum.
    """
    while True:
        lengths = lengths_at(progress(), cfg)
        episodes = [
            encode_episode(
                sample_task(
                    rng,
                    n_train=rng.randint(cfg.min_demos, cfg.max_demos),
                    compose_p=cfg.compose_p,
                    lengths=lengths,
                ),
                vocab,
                cfg.indexed,
            )
            for _ in range(cfg.batch_size * pool)
        ]
        episodes.sort(key=lambda e: len(e[0]))
        chunks = [episodes[i : i + cfg.batch_size] for i in range(0, len(episodes), cfg.batch_size)]
        rng.shuffle(chunks)
        yield from chunks


def lr_at(step: int, progress: float, cfg: TrainConfig) -> float:
    """Warm-up over steps, then cosine over the budget's progress (0..1) down to 10 %."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def loss_by_demos(
    model: Any, tasks: list[Task], vocab: dict[str, int], indexed: bool = False
) -> dict[int, float]:
    """Mean loss per output cell of each task's query given its first k demonstrations, k = 0..3.

    Only colour cells and the closing newline count (not index letters), so the numbers compare
    across serializations.
    """
    counted = {vocab[str(d)] for d in range(10)} | {vocab["\n"]}
    import torch

    out: dict[int, float] = {}
    model.eval()
    for k in range(4):
        total, count = 0.0, 0
        for i in range(0, len(tasks), 16):
            episodes = []
            for t in tasks[i : i + 16]:
                ids, mask = encode_episode(t.model_copy(update={"train": t.train[:k]}), vocab, indexed)
                # only the query's output cells count: clear the mask on demonstrations and letters
                last = len(ids) - len(encode_pair(t.test[0].input, t.test[0].target, "grid", indexed))
                episodes.append(
                    (ids, [m if j >= last and ids[j] in counted else 0 for j, m in enumerate(mask)])
                )
            batch = make_batch(episodes, vocab["<pad>"])
            with torch.no_grad():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="sum"
            )
            total += losses.item()
            count += int((labels != -100).sum())
        out[k] = total / max(count, 1)
    return out


def greedy_hits(checkpoint: Path, tasks: list[Task]) -> list[bool]:
    """Greedy exact match per task through the product's own backend (the inference code path)."""
    from models.base import PromptParts
    from models.hf_backend import HFBackend
    from tasks.scoring import exact_match

    backend = HFBackend(checkpoint)
    hits = []
    for t in tasks:
        parts = PromptParts(kind="grid", function=t.function, demos=t.train[:3], query=t.test[0].input)
        gen = backend.generate(backend.renderer.render(parts), n=1, temperature=0.0)
        hits.append(
            exact_match("grid", backend.renderer.parse(gen.samples[0].text, "grid"), t.test[0].target)
        )
    return hits


def arc_report(checkpoint: Path, arc_dir: Path) -> dict[str, dict[str, float]]:
    """1D-ARC exact match per type (3 demonstrations, first test query) with 95 % bootstrap CIs."""
    from graph.bench import GPT4_1DARC
    from tasks.loaders import load_task_dir
    from tasks.scoring import bootstrap_ci

    by_type: dict[str, list[Task]] = {}
    for t in load_task_dir(arc_dir):
        by_type.setdefault(t.type or "?", []).append(t)
    report = {}
    everything: list[bool] = []
    for name, tasks in sorted(by_type.items()):
        hits = greedy_hits(checkpoint, tasks)
        everything += hits
        lo, hi = bootstrap_ci(hits)
        report[name] = {
            "accuracy": sum(hits) / len(hits),
            "ci_low": lo,
            "ci_high": hi,
            "n": len(hits),
            "gpt4": GPT4_1DARC.get(name, float("nan")),
        }
    lo, hi = bootstrap_ci(everything)
    report["overall"] = {
        "accuracy": sum(everything) / max(len(everything), 1),
        "ci_low": lo,
        "ci_high": hi,
        "n": len(everything),
        "gpt4": 45.1,
    }
    return report


def train(cfg: TrainConfig, out: Path, arc_dir: Path | None = None) -> dict[str, Any]:
    """Train, evaluate, save; returns the report."""
    import torch

    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    vocab = vocabulary()
    model = build_model(cfg.model, seed=cfg.seed)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    eval_rng = random.Random(cfg.seed + 1)  # a separate stream: eval tasks never seen in training
    eval_tasks = [sample_task(eval_rng, n_train=3) for _ in range(cfg.eval_tasks)]
    logger.info("model: %d parameters; budget %.1f min", params, cfg.minutes)

    started, step, tokens, smoothed = time.monotonic(), 0, 0, None
    budget = cfg.minutes * 60

    def progress() -> float:
        by_time = (time.monotonic() - started) / budget
        return max(by_time, step / cfg.max_steps) if cfg.max_steps else by_time

    stream = episode_batches(rng, cfg, vocab, progress)
    model.train()
    while (done := progress()) < 1:
        batch = make_batch(next(stream), vocab["<pad>"])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, done, cfg)
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(batch["attention_mask"].sum())
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        step += 1
        if step % 100 == 0:
            elapsed = time.monotonic() - started
            logger.info(
                "step %d  loss %.3f  %.0f tok/s  %.1f min  rows %s",
                step,
                smoothed,
                tokens / elapsed,
                elapsed / 60,
                lengths_at(done, cfg),
            )
    train_s = time.monotonic() - started

    demos_loss = loss_by_demos(model, eval_tasks, vocab, cfg.indexed)
    report: dict[str, Any] = {
        "parameters": params,
        "tokens": tokens,
        "steps": step,
        "train_minutes": round(train_s / 60, 2),
        "families": sorted(FAMILIES),
        "final_train_loss": round(smoothed or float("nan"), 4),
        "output_loss_by_demos": {str(k): round(v, 4) for k, v in demos_loss.items()},
        "config": {**asdict(cfg), "model": config_dict(cfg.model)},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    marker = {"indexed": cfg.indexed}
    save_checkpoint(model, out, extra={**marker, "training": report})
    hits = greedy_hits(out, eval_tasks)
    report["held_in_accuracy"] = round(sum(hits) / max(len(hits), 1), 4)
    if arc_dir is not None and arc_dir.is_dir():
        report["1d_arc"] = arc_report(out, arc_dir)
    save_checkpoint(model, out, extra={**marker, "training": report})
    return report


def smoke_config() -> TrainConfig:
    """A tiny model and a few steps: exercises every line in seconds."""
    tiny = EmbeddedConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)
    return TrainConfig(model=tiny, batch_size=4, warmup_steps=2, minutes=1.0, max_steps=5, eval_tasks=4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--minutes", type=float, help="training time budget")
    parser.add_argument("--steps", type=int, help="stop after this many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny model, 5 steps (for tests)")
    parser.add_argument("--indexed", action="store_true", help="indexed serialization of grid cells")
    parser.add_argument("--hidden", type=int, help="hidden size (heads scale to keep head dim 32)")
    parser.add_argument("--layers", type=int, help="number of layers")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--eval-arc",
        type=Path,
        default=DEFAULT_ARC,
        help="1D-ARC folder to measure on after training (skipped when absent)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = smoke_config() if args.smoke else TrainConfig()
    cfg.seed = args.seed
    if args.minutes is not None:
        cfg.minutes = args.minutes
    if args.steps is not None:
        cfg.max_steps = args.steps
    cfg.indexed = args.indexed
    if args.hidden:
        cfg.model.hidden_size, cfg.model.num_heads = args.hidden, max(1, args.hidden // 32)
        cfg.model.intermediate_size = 4 * args.hidden
    if args.layers:
        cfg.model.num_layers = args.layers
    if args.threads:
        cfg.threads = args.threads
    report = train(cfg, args.out, None if args.smoke else args.eval_arc)
    losses = report["output_loss_by_demos"]
    print(f"parameters      {report['parameters']:,}")
    print(f"tokens seen     {report['tokens']:,} in {report['steps']} steps, {report['train_minutes']} min")
    print(f"families        {len(report['families'])}: {', '.join(report['families'])}")
    print(
        "output loss after 0/1/2/3 demonstrations: " + " / ".join(f"{losses[str(k)]:.3f}" for k in range(4))
    )
    print(f"held-in exact match (greedy, 3 demos): {report['held_in_accuracy']:.1%}")
    for name, row in report.get("1d_arc", {}).items():
        print(
            f"1D-ARC {name:<18} {row['accuracy']:6.1%}  [{row['ci_low']:.0%}, {row['ci_high']:.0%}]  "
            f"n={row['n']:<3}  GPT-4 {row['gpt4']:.1f}%"
        )
    print(json.dumps({"checkpoint": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
