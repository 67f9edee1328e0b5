"""Seconds per training step of the embedded models, each way they can train, in one run.

Command::

    python -m models.step_bench --steps 8 --threads 1

Times forward, backward and the AdamW step on the training stream's own batches (64 tables
each, from step 19,000 on; one untimed warm-up step first) for: the row sums the direct way
(:func:`models.table_model.dense_row_sums`, the baseline: how rows were summed before session
38; the rest of the step is today's) and as an embedding bag; fp32 and bfloat16 matmuls
(``--bf16``); the shipped depth and a grown one (``--grow-layers``). Prints a table with each
variant's ratio to the baseline. Every variant trains a fresh model of its shape on the same
batches, so only the arithmetic differs. Then the text model at its shipped shape, fp32 against
bfloat16 (``python -m models.train --bf16``), on its stream's batches from step 29,000.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

#: The training stream's step the timed batches start at (a late step: full-length episodes).
FIRST_STEP = 19_000


@dataclass(frozen=True)
class Variant:
    """One way to train: how rows are summed, the matmul precision, the blocks."""

    dense: bool  # the direct [B, R, F, d] row sums (the baseline)
    bf16: bool  # bfloat16 matmuls (CPU autocast)
    layers: int  # attention blocks

    @property
    def name(self) -> str:
        rows = "dense row sums" if self.dense else "embedding bag"
        return f"{rows}, {'bf16' if self.bf16 else 'fp32'}, {self.layers} blocks"


def seconds_per_step(variant: Variant, *, steps: int, hidden: int, threads: int) -> float:
    """Mean wall seconds of ``steps`` training steps of ``variant`` (after a warm-up step)."""
    import torch

    from models.table_model import build_table_model, dense_row_sums
    from models.tokenizer import vocabulary
    from models.train_table import TableTrainConfig, batch_at

    torch.set_num_threads(threads)
    cfg = TableTrainConfig(hidden=hidden, layers=variant.layers, heads=max(1, hidden // 32))
    model = build_table_model(hidden=hidden, layers=variant.layers, heads=cfg.heads)
    if variant.dense:
        model.row_sums = lambda rows: dense_row_sums(model, rows)  # type: ignore[method-assign]
    vocab = vocabulary()
    return _mean_step_seconds(
        model, [batch_at(FIRST_STEP + i, cfg, vocab) for i in range(steps + 1)], bf16=variant.bf16, lr=cfg.lr
    )


def text_seconds_per_step(*, bf16: bool, steps: int, threads: int, start: int = 29_000) -> float:
    """Mean wall seconds of ``steps`` training steps of the text model at its shipped shape, on the
    stream's batches from step ``start`` (after a warm-up step), fp32 or with bfloat16 matmuls."""
    import torch

    from models.batching import make_batch
    from models.embedded import build_model
    from models.tokenizer import vocabulary
    from models.train import TrainConfig, pool_at

    torch.set_num_threads(threads)
    cfg, vocab = TrainConfig(), vocabulary()
    model = build_model(cfg.model, seed=cfg.seed)
    episodes: list[Any] = []
    index = start // cfg.pool
    while len(episodes) < steps + 1:
        episodes += pool_at(index, cfg, vocab)
        index += 1
    batches = [make_batch(e, vocab["<pad>"]) for e in episodes[: steps + 1]]
    return _mean_step_seconds(model, batches, bf16=bf16, lr=cfg.lr)


def _mean_step_seconds(model: Any, batches: list[dict[str, Any]], *, bf16: bool, lr: float) -> float:
    """Mean wall seconds of an AdamW training step over ``batches`` after the first (which warms
    caches and allocators; batches are built beforehand, so only the step is timed)."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    elapsed = 0.0
    for i, batch in enumerate(batches):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            elapsed += time.perf_counter() - started
    return elapsed / max(1, len(batches) - 1)


def _ratio(seconds: float, base: float, *, first: bool) -> str:
    if first:
        return "baseline"
    return f"{base / seconds:.2f}x faster" if seconds < base else f"{seconds / base:.2f}x slower"


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="python -m models.step_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--hidden", type=int, default=192, help="row-token width (default: the shipped 192)")
    parser.add_argument("--layers", type=int, default=6, help="blocks (default: the shipped 6)")
    parser.add_argument("--grown", type=int, default=9, help="blocks of the grown variants (0: none)")
    parser.add_argument(
        "--text", action=argparse.BooleanOptionalAction, default=True, help="the text model too (default on)"
    )
    args = parser.parse_args(argv)
    for name in ("steps", "threads", "hidden", "layers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: expected at least 1")
    if args.grown < 0:
        parser.error(f"--grown {args.grown}: expected 0 (none) or more blocks")
    variants = [
        Variant(dense=True, bf16=False, layers=args.layers),
        Variant(dense=False, bf16=False, layers=args.layers),
        Variant(dense=False, bf16=True, layers=args.layers),
    ]
    if args.grown:
        variants += [Variant(dense=False, bf16=b, layers=args.grown) for b in (False, True)]
    title = f"table model ({args.hidden} wide), one step of 64 tables, {args.threads} thread(s)"
    table = Table(title=title)
    for column in ("variant", "s / step", "ratio"):
        table.add_column(column)
    base = 0.0
    for v in variants:
        s = seconds_per_step(v, steps=args.steps, hidden=args.hidden, threads=args.threads)
        table.add_row(v.name, f"{s:.3f}", _ratio(s, base or s, first=not base))
        base = base or s
    Console().print(table)
    if args.text:
        text = Table(title=f"text model (shipped shape), one step of 24 episodes, {args.threads} thread(s)")
        for column in ("variant", "s / step", "ratio"):
            text.add_column(column)
        base = 0.0
        for bf16 in (False, True):
            s = text_seconds_per_step(bf16=bf16, steps=args.steps, threads=args.threads)
            text.add_row("bf16" if bf16 else "fp32", f"{s:.3f}", _ratio(s, base or s, first=not base))
            base = base or s
        Console().print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
