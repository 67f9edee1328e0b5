"""Train the embedded table model on synthetic tables drawn from priors, in resumable legs.

Commands::

    python -m models.train_table --out models/checkpoints/embedded-tabular --minutes 60   # a new run
    python -m models.train_table --resume models/checkpoints/embedded-tabular --minutes 60  # next leg
    python -m models.train_table --smoke --out /tmp/table-ckpt                           # seconds

Episodes come from :mod:`tasks.tabular_prior` (random SCMs, trees, linear functions and Gaussian
blobs; 1-30 features; 2-6 classes or a regression target), written in the compact table format
the product renders at inference, with the loss on every label: the table model
(:mod:`models.table_model`) predicts each row's label from the rows before it, so one episode of
``k`` rows trains ``k`` predictions. Step ``s`` reads tables ``s * batch .. (s + 1) * batch - 1``
of the seed's stream, so a resumed run sees exactly the tables it would have seen.

Schedule: linear warm-up, constant, a linear decay over the last ``decay_frac`` of
``total_steps`` (raise ``--total-steps`` on resume to extend). An exponential moving average of
the weights is what ships. Every ``save_minutes`` and at the end of a leg the run writes
``train_state.pt`` (kept out of git), the shipped weights, and a measurement on held-out
synthetic tables (another seed: 16 demonstrations, one query each; accuracy and the label's
negative log-likelihood, the steadier of the two) and, when ``--eval-tables``
names a folder of tables, on those (16 stratified demonstrations, 5 seeds x 50 queries, exactly
the product's prompts). Each leg appends ``{"tokens", "cpu_hours", "gpu_hours", "steps",
...metrics}`` to the ledger in ``mockingbird.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.batching import make_batch
from models.evaluate import Episode, forward_episodes
from models.legs import hold_run, leg_parser, next_leg
from models.schedule import lr_at as schedule_lr
from models.schedule import needs_rewarm, pretraining
from models.tokenizer import vocabulary
from models.train import STATE_FILE, cpu_seconds, warn_if_bf16_is_emulated
from prompts.tabular import serialize_episode
from tasks.tabular_prior import PriorConfig, sample_task

logger = logging.getLogger("models.train_table")
MARKER = "mockingbird.json"
#: Seed of the held-out synthetic tables (never a training seed).
EVAL_SEED = 987_654


@dataclass(kw_only=True)
class TableTrainConfig:
    """Training settings (a run keeps the ones it started with; ``--resume`` reads them back)."""

    hidden: int = 128  # row-token width
    layers: int = 4  # attention blocks over rows (kNN-like lookups need two; more for mixing)
    heads: int = 4  # attention heads
    batch_size: int = 64  # episodes (tables) per step
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01  # AdamW decay
    warmup_steps: int = 200  # linear warm-up
    total_steps: int = 40_000  # the schedule's length; raise it on resume to extend
    decay_frac: float = 0.15  # the last share of total_steps decays linearly to 10 % of lr
    ema_decay: float = 0.995  # the shipped weights average ~200 recent steps
    save_minutes: float = 10.0  # save + measure this often (a session stop kills the process)
    eval_tables: int = 1_200  # held-out synthetic tables per measurement (300 left +-3 points of noise)
    threads: int = 2  # torch CPU threads
    seed: int = 0  # the table stream's seed
    rewarm_at: int = 0  # the step a decayed run was extended (or warm-started) at: re-warm from it
    # matmuls in bfloat16 (CPU autocast, fp32 weights): 1.14x a step with AVX512-BF16, 3.6x slower without
    bf16: bool = False
    # the prior's mechanisms drawn by these relative weights ({}: uniform, the stream of every leg before)
    mechanism_weights: dict[str, float] = field(default_factory=dict)


def episode_ids(text: str, mask: list[int], vocab: dict[str, int]) -> tuple[list[int], list[int]]:
    """Token ids (``<bos>`` first) and loss mask of a serialized episode, as the batcher takes them."""
    ids = [vocab["<bos>"]] + [vocab.get(ch, vocab["<unk>"]) for ch in text]
    return ids, [0, *mask]


def batch_at(step: int, cfg: TableTrainConfig, vocab: dict[str, int]) -> dict[str, Any]:
    """The batch of step ``step``: tables ``step * batch_size ...`` of the seed's stream."""
    episodes = []
    prior = PriorConfig(mechanism_weights=cfg.mechanism_weights)
    for i in range(cfg.batch_size):
        text, mask = serialize_episode(sample_task(cfg.seed, step * cfg.batch_size + i, prior))
        episodes.append(episode_ids(text, mask, vocab))
    return make_batch(episodes, vocab["<pad>"])


def lr_at(step: int, cfg: TableTrainConfig) -> float:
    """Warm-up, constant, then a linear decay to 10 % over the last ``decay_frac`` (from a whole step);
    from ``rewarm_at`` on, a second linear warm-up over ``warmup_steps``."""
    return schedule_lr(step, pretraining(cfg, whole_step=True))


# --- measurement --------------------------------------------------------------------------------


def synthetic_measures(model: Any, n: int, vocab: dict[str, int]) -> tuple[float, float]:
    """Accuracy and mean negative log-likelihood (nats) of the query label of ``n`` held-out
    classification tables with 16 demonstrations.

    The likelihood is the steadier measure: one query per table makes accuracy a coin flip per
    table (300 tables: +-3 points), while the label's log-likelihood also moves when the model
    grows surer of a right answer or less sure of a wrong one.
    """
    cfg = PriorConfig(regression_p=0.0)
    episodes = [
        _episode(*serialize_episode(sample_task(EVAL_SEED, i, cfg, demos=16), loss_on="queries"), vocab)
        for i in range(n)
    ]
    results = forward_episodes(model, episodes, vocab["<pad>"])
    n_done = max(1, len(results))
    return sum(ok for ok, _, _ in results) / n_done, sum(loss for _, loss, _ in results) / n_done


def _episode(text: str, mask: list[int], vocab: dict[str, int]) -> Episode:
    """A serialized episode whose target (the query's label and newline) ends it, as
    :func:`models.evaluate.forward_episodes` takes it: ids and where the target starts."""
    ids, loss = episode_ids(text, mask, vocab)
    return ids, loss.index(1)


def _share_right(model: Any, episodes: list[Episode], vocab: dict[str, int]) -> float:
    """Greedy exact match of each episode's target (teacher-forced: equal to greedy decoding)."""
    results = forward_episodes(model, episodes, vocab["<pad>"])
    return sum(ok for ok, _, _ in results) / max(1, len(results))


def table_accuracy(
    model: Any, folder: Path, vocab: dict[str, int], seeds: int = 5, queries: int = 50
) -> dict[str, float]:
    """Accuracy per table file in ``folder`` (classification ones), with the product's prompts."""
    from models.base import PromptParts
    from prompts.compact import CompactRenderer
    from tasks.schema import Task
    from tasks.tabular import TaskSplit, load_table_task

    renderer = CompactRenderer()
    out: dict[str, float] = {}
    for path in sorted(folder.glob("*.csv")):
        episodes: list[Episode] = []
        for seed in range(seeds):
            task = Task.model_validate(
                load_table_task(path, TaskSplit(k_shot=16, seed=seed, queries=queries))
            )
            if task.function.target_type == "regression":
                break
            for q in task.test:
                parts = PromptParts(kind="tabular", function=task.function, demos=task.train, query=q.input)
                text = renderer.render(parts).text or ""
                answer = renderer.format_value(q.target, "tabular", parts)
                episodes.append(_episode(text + answer, [0] * len(text) + [1] * len(answer), vocab))
        if episodes:
            out[path.stem] = round(_share_right(model, episodes, vocab), 4)
    return out


# --- the run ------------------------------------------------------------------------------------


class Run:
    """Model, EMA, optimiser and counters of a run in ``out``; saves and resumes them."""

    def __init__(self, out: Path, cfg: TableTrainConfig, *, resume: bool, grow: int = 0) -> None:
        import torch

        from models.table_model import build_table_model

        torch.set_num_threads(cfg.threads)
        self.out, self.cfg = out, cfg
        self.model = build_table_model(hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, seed=cfg.seed)
        self.ema = build_table_model(hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, seed=cfg.seed)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.tokens, self.cpu_s = 0, 0, 0.0
        self.warm_start = False
        state_path = out / STATE_FILE
        if resume and state_path.is_file():
            state = torch.load(state_path, weights_only=False)
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["opt"])
            self.step, self.tokens, self.cpu_s = state["step"], state["tokens"], state["cpu_s"]
        elif resume:  # a fresh clone: the committed (EMA) weights, a fresh optimiser
            from models.table_model import TableModel

            weights = TableModel.from_pretrained(out, dtype=torch.float32).state_dict()
            self.model.load_state_dict(weights)
            self.ema.load_state_dict(weights)
            marker = json.loads((out / MARKER).read_text())
            totals = marker.get("totals", {})
            self.step, self.tokens = int(totals.get("steps", 0)), int(totals.get("tokens", 0))
            self.cpu_s = float(totals.get("cpu_hours", 0.0)) * 3600
            self.warm_start = True
        else:
            self.ema.load_state_dict(self.model.state_dict())
        self.grown: dict[str, int] | None = None
        if grow:
            self._grow(grow)
        self.ema.eval()

    def _grow(self, extra: int) -> None:
        """Add ``extra`` blocks to the model and its EMA (:func:`models.table_model.grow_layers`: the
        same function, more depth), keeping the old parameters' optimiser moments."""
        import torch

        from models.growth import carry_moments, grown_block_order
        from models.table_model import grow_layers

        order = grown_block_order(self.cfg.layers, extra)
        old_names = [n for n, _ in self.model.named_parameters()]
        old_state = self.opt.state_dict()
        self.model, self.ema = grow_layers(self.model, extra), grow_layers(self.ema, extra)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        carry_moments(self.opt, self.model, old_names, old_state, "blocks.", order)
        self.grown = {"from_layers": self.cfg.layers, "to_layers": len(order), "at_step": self.step}
        self.cfg.layers = len(order)

    def update_ema(self) -> None:
        import torch

        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.lerp_(p, 1 - self.cfg.ema_decay)

    def save(self, marker: dict[str, Any]) -> None:
        """Shipped weights (EMA), tokenizer and marker; then the state file, atomically."""
        import torch

        from models.table_model import save_table_checkpoint

        marker["totals"] = {
            "steps": self.step,
            "tokens": self.tokens,
            "cpu_hours": round(self.cpu_s / 3600, 4),
        }
        save_table_checkpoint(self.ema, self.out, marker)
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "step": self.step,
            "tokens": self.tokens,
            "cpu_s": self.cpu_s,
        }
        tmp = self.out / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.out / STATE_FILE)

    def measure(self, eval_dir: Path | None) -> dict[str, Any]:
        vocab = vocabulary()
        acc, nll = synthetic_measures(self.ema, self.cfg.eval_tables, vocab)
        metrics: dict[str, Any] = {
            "synthetic_acc": round(acc, 4),
            "synthetic_nll": round(nll, 4),
            "synthetic_tables": self.cfg.eval_tables,
        }
        if eval_dir is not None and eval_dir.is_dir():
            per_table = table_accuracy(self.ema, eval_dir, vocab)
            metrics["tables"] = per_table
            if per_table:
                metrics["tables_mean"] = round(sum(per_table.values()) / len(per_table), 4)
        return metrics


def train_leg(
    out: Path,
    cfg: TableTrainConfig,
    *,
    resume: bool,
    minutes: float,
    steps: int,
    eval_dir: Path | None,
    grow: int = 0,
) -> dict[str, Any]:
    """One leg: train until ``minutes`` pass, ``steps`` are done, the schedule ends or a signal.
    ``grow``: first add that many attention blocks to the resumed model (see :meth:`Run._grow`)."""
    import torch

    run = Run(out, cfg, resume=resume, grow=grow)
    marker = json.loads((out / MARKER).read_text()) if resume and (out / MARKER).is_file() else {}
    saved = marker.get("train") or {}
    before = TableTrainConfig(
        **{k: v for k, v in saved.items() if k in TableTrainConfig.__dataclass_fields__}
    )
    jump = needs_rewarm(lr_at(run.step, cfg), lr_at(run.step, before))  # a decayed run extended
    if resume and run.step and (run.warm_start or jump or run.grown):
        cfg.rewarm_at = run.step
        logger.info(
            "the learning rate re-warms from step %d (a decayed run extended, a warm start or new blocks)",
            run.step,
        )
    if run.grown:
        logger.info("grown from %(from_layers)d to %(to_layers)d blocks at step %(at_step)d", run.grown)
    marker["train"] = asdict(cfg)
    marker.setdefault("ledger", [])
    marker.setdefault("curve", [])
    stop = {"now": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    vocab = vocabulary()
    start_step, start_tokens, start_cpu = run.step, run.tokens, run.cpu_s
    t0 = time.monotonic()
    cpu0 = cpu_seconds()
    last_save = t0
    losses: list[float] = []
    params = sum(p.numel() for p in run.model.parameters())
    logger.info(
        "table model: %d parameters; step %d of %d; leg of %.0f min",
        params,
        run.step,
        cfg.total_steps,
        minutes,
    )
    warn_if_bf16_is_emulated(cfg.bf16)
    run.model.train()
    while run.step < cfg.total_steps and not stop["now"]:
        if steps and run.step - start_step >= steps:
            break
        if time.monotonic() - t0 > minutes * 60:
            break
        batch = batch_at(run.step, cfg, vocab)
        for group in run.opt.param_groups:
            group["lr"] = lr_at(run.step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = run.model(**batch).loss
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
        run.opt.step()
        run.update_ema()
        run.step += 1
        run.tokens += int(batch["attention_mask"].sum())
        losses.append(loss.item())
        if run.step % 50 == 0:
            logger.info(
                "step %d loss %.4f lr %.2e",
                run.step,
                sum(losses[-50:]) / len(losses[-50:]),
                lr_at(run.step, cfg),
            )
        if time.monotonic() - last_save > cfg.save_minutes * 60:
            run.cpu_s = start_cpu + cpu_seconds() - cpu0
            metrics = run.measure(eval_dir)
            marker["curve"].append(
                {
                    "step": run.step,
                    "tokens": run.tokens,
                    "loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
                    **metrics,
                }
            )
            run.save(marker)
            logger.info("saved at step %d: %s", run.step, metrics)
            last_save = time.monotonic()
    run.cpu_s = start_cpu + cpu_seconds() - cpu0
    metrics = run.measure(eval_dir)
    recent = losses[-50:]
    line = {  # cumulative totals, then this leg's share (as models.train writes its ledger)
        "leg": next_leg(marker["ledger"]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "steps": run.step,
        "tokens": run.tokens,
        "cpu_hours": round(run.cpu_s / 3600, 4),
        "gpu_hours": 0.0,
        "leg_steps": run.step - start_step,
        "leg_tokens": run.tokens - start_tokens,
        "leg_cpu_hours": round((run.cpu_s - start_cpu) / 3600, 4),
        "leg_wall_minutes": round((time.monotonic() - t0) / 60, 1),
        "warm_start": run.warm_start,
        **({"grown": run.grown} if run.grown else {}),
        **({"bf16": True} if cfg.bf16 else {}),
        **({"mechanism_weights": cfg.mechanism_weights} if cfg.mechanism_weights else {}),
        "loss": round(sum(recent) / len(recent), 4) if recent else None,
        **metrics,
    }
    marker["ledger"].append(line)
    marker["curve"].append({"step": run.step, "tokens": run.tokens, "loss": line["loss"], **metrics})
    run.save(marker)
    logger.info("leg done: %s", line)
    return line


def _mechanism_weights(text: str) -> dict[str, float]:
    """``--mechanism-weights``: ``name=weight,...`` (or ``uniform``), checked against the prior."""
    if text.strip() == "uniform":
        return {}
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value) if sep else float("nan")
        except ValueError:
            weights[name.strip()] = float("nan")
    try:
        PriorConfig(mechanism_weights=weights)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
    if not weights:
        raise argparse.ArgumentTypeError(f"{text!r}: expected name=weight pairs such as linear=2")
    return weights


def smoke_config() -> TableTrainConfig:
    return TableTrainConfig(
        hidden=32, layers=1, heads=2, batch_size=4, total_steps=6, warmup_steps=2, eval_tables=8
    )


def main(argv: list[str] | None = None) -> int:
    parser = leg_parser("python -m models.train_table", __doc__.split("\n")[0])
    parser.add_argument("--eval-tables", type=Path, help="a folder of CSV tables measured at every save")
    parser.add_argument("--hidden", type=int, help="row-token width of a new run (heads keep head dim 32)")
    parser.add_argument("--layers", type=int, help="attention blocks of a new run")
    parser.add_argument(
        "--grow-layers",
        type=int,
        default=0,
        help="with --resume: first add this many attention blocks (the same function, more depth)",
    )
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        help="train with bfloat16 matmuls from this leg on (kept by the run; --no-bf16 to stop)",
    )
    parser.add_argument(
        "--mechanism-weights",
        type=_mechanism_weights,
        help="from this leg on, draw the prior's mechanisms by these relative weights, e.g. "
        "linear=2 (others 1; kept by the run; 'uniform' to go back)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out: Path = args.resume or args.out
    if args.resume and (args.hidden or args.layers):
        parser.error("--hidden/--layers: set a new run's shape (--out); a resumed run keeps its own")
    if args.grow_layers and not args.resume:
        parser.error("--grow-layers: grows a trained run (--resume); a new run takes --layers")
    if not 0 <= args.grow_layers <= 64:
        parser.error(f"--grow-layers {args.grow_layers}: expected 0-64 new blocks")
    if args.resume and not (args.resume / MARKER).is_file():
        parser.error(f"--resume {args.resume}: no {MARKER} (not a table run)")
    if not args.resume and (args.out / MARKER).exists():
        parser.error(f"--out {args.out}: already holds a run (use --resume)")
    with hold_run(parser, args):  # held from reading the run's plan to the leg's last save
        _leg_from_args(args, out)
    return 0


def _leg_from_args(args: argparse.Namespace, out: Path) -> None:
    """The run's config (the saved one, or a new run's shape) with this leg's flags, then the leg."""
    if args.resume:
        saved = json.loads((args.resume / MARKER).read_text()).get("train", {})
        cfg = TableTrainConfig(
            **{k: v for k, v in saved.items() if k in TableTrainConfig.__dataclass_fields__}
        )
    else:
        cfg = smoke_config() if args.smoke else TableTrainConfig()
        if args.hidden:
            cfg.hidden, cfg.heads = args.hidden, max(1, args.hidden // 32)
        if args.layers:
            cfg.layers = args.layers
    if args.total_steps:
        cfg.total_steps = args.total_steps
    if args.threads:
        cfg.threads = args.threads
    if args.save_minutes:
        cfg.save_minutes = args.save_minutes
    if args.bf16 is not None:
        cfg.bf16 = args.bf16
    if args.mechanism_weights is not None:
        cfg.mechanism_weights = args.mechanism_weights
    train_leg(
        out,
        cfg,
        resume=bool(args.resume),
        minutes=args.minutes,
        steps=args.steps,
        eval_dir=args.eval_tables,
        grow=args.grow_layers,
    )


if __name__ == "__main__":
    raise SystemExit(main())
