"""Train the embedded model on procedural tasks, in resumable legs with a ledger.

Commands::

    python -m models.train --out models/checkpoints/embedded --minutes 150      # a new run, first leg
    python -m models.train --resume models/checkpoints/embedded --minutes 150   # the next leg
    python -m models.train --resume models/checkpoints/embedded --device cuda   # a leg on a lent GPU
    python -m models.train --smoke --out /tmp/ckpt                              # seconds (a test runs it)
    python -m models.train --resume DIR --reweigh 1500 --compose-p 0.8  # a leg whose mix goes where it errs

Episodes are drawn on the fly from ``tasks.generators`` (primitives composed one to three deep,
never a held-out composition, plus lists of numbers) and written with ``prompts.compact``, the
format the model reads at inference: 2-5 demonstrations and a query, loss on every output cell
and the newline that ends it, never on inputs. The batch of step ``s`` is a pure function of the
seed and ``s`` (:func:`batch_at`), so a resumed run sees exactly the batches it would have seen.

A run is laid out over ``total_steps`` (warm-up, a long constant phase, a final decay: a
warmup-stable-decay schedule, so a run can be extended by raising ``--total-steps`` on resume).
Rows start short and grow, and compositions get more frequent, over ``curriculum_steps``. An
exponential moving average of the weights is what ships (it needs no decay phase to be good).

Every ``save_minutes`` the run saves ``train_state.pt`` (model, optimiser, EMA, step, counters;
kept out of git) and the shipped weights, and measures greedy exact match on the held-out
families, held-in chains, the shared 1D-ARC types and the bundled examples (:mod:`models.evaluate`,
teacher-forced, so a few seconds): the curve in ``mockingbird.json``. A leg ends after
``--minutes`` or on SIGTERM/SIGINT, saving first, and appends its line to the ledger
(tokens, CPU hours, steps, metrics). Without ``train_state.pt`` (e.g. a fresh clone), ``--resume``
warm-starts from the committed weights with a fresh optimiser, and the ledger says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.batching import make_batch
from models.embedded import MARKER, EmbeddedConfig, build_model, config_dict, save_checkpoint
from models.legs import hold_run, leg_parser, next_leg
from models.schedule import lr_at as schedule_lr
from models.schedule import needs_rewarm, pretraining
from models.tokenizer import vocabulary
from prompts.compact import encode_pair, encode_query
from tasks.generators import FAMILIES, HELD_OUT, sample_list_task, sample_task
from tasks.schema import Task

logger = logging.getLogger("models.train")
STATE_FILE = "train_state.pt"


@dataclass(kw_only=True)
class TrainConfig:
    """Training settings (a run keeps the ones it started with; ``--resume`` reads them back)."""

    model: EmbeddedConfig = field(default_factory=EmbeddedConfig)  # the model's shape
    batch_size: int = 24  # episodes per step
    lr: float = 1.5e-3  # peak learning rate (small models like it high; 2e-3 suited 4 layers)
    weight_decay: float = 0.01  # AdamW decay
    warmup_steps: int = 300  # linear warm-up
    total_steps: int = 30_000  # the schedule's length (~130 M tokens); raise it on resume to extend
    decay_frac: float = 0.15  # the last share of total_steps decays linearly to 10 % of lr
    ema_decay: float = 0.999  # the shipped weights average ~1/(1-decay) recent steps
    min_demos: int = 2  # demonstrations per episode drawn from min_demos..max_demos; the loss
    max_demos: int = 5  # on every output covers 0..k demonstrations of context in one episode
    compose_p: tuple[float, float] = (
        0.15,
        0.5,
    )  # share of compositions, at the start and after the curriculum
    deep_p: float = 0.3  # share of compositions that are three steps deep
    list_p: float = 0.1  # share of list-of-numbers episodes
    discriminate: bool = True  # queries a rival rule would answer differently (read the demos)
    start_lengths: tuple[int, int] = (6, 12)  # row lengths at the start (short: copying is easy)
    lengths: tuple[int, int] = (6, 30)  # row lengths once the curriculum is over
    curriculum_steps: int = 4000  # steps over which rows grow and compositions become common
    pool: int = 8  # batches drawn together and sorted by length (less padding)
    save_minutes: float = 15.0  # save + measure this often (a session stop kills the process)
    eval_per_family: int = 30  # held-out tasks per family in each measurement
    ttt_per_family: int = 1  # held-out tasks per family for TTT + vote at the end of each leg (slow)
    threads: int = 2  # torch CPU threads
    seed: int = 0  # everything random derives from this
    rewarm_at: int = 0  # a warm start's first step: fresh Adam moments re-warm over warmup_steps
    # bfloat16 matmuls on the CPU too (autocast, fp32 weights): 1.64x a step with AVX512-BF16; emulated
    # (slower) on CPUs without it, where the leg warns
    bf16: bool = False
    # relative weights of the primitives chains draw (empty: uniform); set by --reweigh from
    # measured held-in errors, so episodes go where the model errs
    primitive_weights: dict[str, float] = field(default_factory=dict)


# --- data ---------------------------------------------------------------------------------------


#: One encoded episode: token ids and the loss mask.
Episode = tuple[list[int], list[int]]


def encode_episode(task: Task, vocab: dict[str, int]) -> Episode:
    """Token ids and loss mask (1 on every output token and its newline) of one episode.

    Demonstrations are the task's train pairs, the query its first test pair with its target.
    """
    ids, mask = [vocab["<bos>"]], [0]
    pairs = [(e.input, e.output) for e in task.train] + [(q.input, q.target) for q in task.test[:1]]
    for inp, out in pairs:
        line = encode_pair(inp, out, task.kind)
        head = len(encode_query(inp, task.kind))
        for i, ch in enumerate(line):
            ids.append(vocab.get(ch, vocab["<unk>"]))
            mask.append(1 if i >= head else 0)
    return ids, mask


def curriculum_at(step: int, cfg: TrainConfig) -> tuple[tuple[int, int], float]:
    """Row-length range and composition share at ``step``: both grow linearly over the curriculum.

    Short rows first: the output cell that copies input cell i sits a row length away, and with
    few row lengths that distance is easy to find; longer rows and deeper rules come once the
    format is learned.
    """
    ramp = 1.0 if cfg.curriculum_steps <= 0 else min(1.0, step / cfg.curriculum_steps)
    lo = round(cfg.start_lengths[0] + ramp * (cfg.lengths[0] - cfg.start_lengths[0]))
    hi = round(cfg.start_lengths[1] + ramp * (cfg.lengths[1] - cfg.start_lengths[1]))
    compose = cfg.compose_p[0] + ramp * (cfg.compose_p[1] - cfg.compose_p[0])
    return (lo, max(lo, hi)), compose


def draw_episode(rng: random.Random, cfg: TrainConfig, step: int) -> Task:
    """One training task at ``step`` of the curriculum (never a held-out family)."""
    n_train = rng.randint(cfg.min_demos, cfg.max_demos)
    if rng.random() < cfg.list_p:
        return sample_list_task(rng, n_train=n_train)
    lengths, compose = curriculum_at(step, cfg)
    return sample_task(
        rng,
        n_train=n_train,
        compose_p=compose,
        deep_p=cfg.deep_p,
        discriminate=cfg.discriminate,
        lengths=lengths,
        weights=cfg.primitive_weights or None,
    )


def pool_at(index: int, cfg: TrainConfig, vocab: dict[str, int]) -> list[list[Episode]]:
    """The ``pool`` batches of pool ``index``: a pure function of the seed and the index.

    ``pool`` batches are drawn together from one RNG seeded by the pool's index, sorted by length
    (episodes range from ~30 to ~800 tokens: sorting halves the padding) and served in an order
    drawn from the same RNG.
    """
    rng = random.Random(cfg.seed * 1_000_003 + index)
    first = index * cfg.pool
    episodes = [
        encode_episode(draw_episode(rng, cfg, first), vocab) for _ in range(cfg.batch_size * cfg.pool)
    ]
    episodes.sort(key=lambda e: len(e[0]))
    chunks = [episodes[i : i + cfg.batch_size] for i in range(0, len(episodes), cfg.batch_size)]
    rng.shuffle(chunks)
    return chunks


def batch_at(step: int, cfg: TrainConfig, vocab: dict[str, int]) -> list[Episode]:
    """The episodes of ``step``: a pure function of the seed and the step (exact resumption)."""
    index, offset = divmod(step, cfg.pool)
    return pool_at(index, cfg, vocab)[offset]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Warm-up, constant, then a linear decay to 10 % over the last ``decay_frac`` of the run."""
    return schedule_lr(step, pretraining(cfg))


# --- the run ------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """This process's CPU time (user + system): the honest unit on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 matmuls natively (AVX512-BF16 or AMX-BF16 on x86, BF16 on
    Arm, from ``/proc/cpuinfo``; ``cpuinfo`` for tests). Elsewhere torch emulates them: measured here, a
    table-model step with ``bf16`` took 3.6x the CPU time of fp32 on a Xeon without either flag,
    where the same run had been 1.14x faster with AVX512-BF16. Unknown (no ``/proc``): True."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return True
    lines = [line for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))]
    return bool({f for line in lines for f in line.split()} & {"avx512_bf16", "amx_bf16", "bf16"})


def warn_if_bf16_is_emulated(bf16: bool) -> bool:
    """Log a warning when a leg asks for bf16 on a CPU that would emulate it (a run keeps its
    ``bf16`` setting, so a run moved to another machine can silently train several times slower).
    Returns whether it warned."""
    if not bf16 or cpu_has_native_bf16():
        return False
    logger.warning(
        "bf16 is on for this run but this CPU has no native bfloat16 (avx512_bf16 / amx_bf16): "
        "torch emulates it, several times slower a step; resume with --no-bf16"
    )
    return True


class Run:
    """A training run's mutable state: model, optimiser, EMA weights and counters."""

    def __init__(self, cfg: TrainConfig, out: Path, device: str = "cpu") -> None:
        import torch

        self.cfg, self.out, self.device = cfg, out, device
        torch.set_num_threads(cfg.threads)
        self.vocab = vocabulary()
        # built on the CPU (the same initial weights whatever the device), then moved
        self.model = build_model(cfg.model, seed=cfg.seed).to(device)
        self.opt = self.optimizer()
        self.ema = [p.detach().clone() for p in self.model.parameters()]
        self.step = 0
        self.tokens = 0
        self.cpu_before = 0.0  # CPU seconds of earlier legs
        self.smoothed: float | None = None
        # the pool being served: drawing one costs ~8 steps' worth of episodes, so it is drawn once
        self._pool: tuple[int, list[list[Episode]]] | None = None

    def optimizer(self) -> Any:
        """A fresh AdamW over the model's parameters, with the run's settings."""
        import torch

        return torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, betas=(0.9, 0.95)
        )

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def grow(self, extra: int) -> dict[str, int]:
        """Add ``extra`` decoder layers to the model and its averaged weights
        (:func:`models.embedded.grow_model`: the same function, more depth); the old parameters
        keep their Adam moments. Returns what the ledger records."""
        from models.embedded import grow_model
        from models.growth import carry_moments, grown_block_order

        before = self.cfg.model.num_layers
        order = grown_block_order(before, extra)
        old_names = [n for n, _ in self.model.named_parameters()]
        old_state = self.opt.state_dict()
        averaged = grow_model(self.ema_model(), extra)
        self.model = grow_model(self.model, extra)
        self.ema = [p.detach().to(self.device).clone() for p in averaged.parameters()]
        self.opt = self.optimizer()
        carry_moments(self.opt, self.model, old_names, old_state, "model.layers.", order)
        self.cfg.model.num_layers = len(order)
        return {"from_layers": before, "to_layers": len(order), "at_step": self.step}

    def episodes(self) -> list[Episode]:
        """This step's episodes, :func:`batch_at` of the step, from the cached pool."""
        index, offset = divmod(self.step, self.cfg.pool)
        if self._pool is None or self._pool[0] != index:
            self._pool = (index, pool_at(index, self.cfg, self.vocab))
        return self._pool[1][offset]

    def train_step(self) -> float:
        """One optimisation step on the step's batch; returns its loss."""
        import torch

        batch = {k: v.to(self.device) for k, v in make_batch(self.episodes(), self.vocab["<pad>"]).items()}
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.cfg)
        self.model.train()
        # bf16 autocast on a GPU, and on the CPU where the run asks for it (fp32 master weights);
        # either way a resumed leg repeats the same arithmetic, so resumption stays bit-exact
        cuda = self.device.startswith("cuda")
        with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda or self.cfg.bf16):
            loss = self.model(**batch).loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        # warm-up of the average: early on it would mostly remember the random initialisation
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for e, p in zip(self.ema, self.model.parameters(), strict=True):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        self.tokens += int(batch["attention_mask"].sum())
        self.step += 1
        value = float(loss.item())
        self.smoothed = value if self.smoothed is None else 0.98 * self.smoothed + 0.02 * value
        return value

    def ema_model(self) -> Any:
        """A CPU copy of the model carrying the averaged weights (what ships and is measured)."""
        import copy

        import torch

        shipped = copy.deepcopy(self.model).to("cpu")
        with torch.no_grad():
            for p, e in zip(shipped.parameters(), self.ema, strict=True):
                p.copy_(e)
        return shipped.eval()

    def state(self) -> dict[str, Any]:
        import torch

        return {
            "config": asdict(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "ema": self.ema,
            "step": self.step,
            "tokens": self.tokens,
            "cpu_seconds": self.cpu_before + cpu_seconds(),
            "smoothed": self.smoothed,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        import torch

        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])  # moves its moments to the parameters' device
        self.ema = [e.to(self.device).clone() for e in state["ema"]]
        self.step, self.tokens = state["step"], state["tokens"]
        self.cpu_before = state["cpu_seconds"] - cpu_seconds()
        self.smoothed = state["smoothed"]
        torch.set_rng_state(state["torch_rng"])

    def save_state(self) -> None:
        """``train_state.pt``, written to a temporary file and renamed (a kill never leaves half)."""
        import torch

        tmp = self.out / (STATE_FILE + ".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(self.out / STATE_FILE)

    def cpu_hours(self) -> float:
        return (self.cpu_before + cpu_seconds()) / 3600


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` back from ``asdict`` (tuples restored)."""
    data = dict(data)
    model = EmbeddedConfig(**data.pop("model"))
    for name, value in list(data.items()):
        if isinstance(value, list):
            data[name] = tuple(value)
    return TrainConfig(model=model, **data)


def read_marker(out: Path) -> dict[str, Any]:
    path = out / MARKER
    return json.loads(path.read_text()) if path.exists() else {}


def write_shipped(run: Run, marker: dict[str, Any]) -> None:
    """The shipped checkpoint: the averaged weights in fp16 (half the bytes in git; backends load
    them as fp32), the tokenizer and ``mockingbird.json``."""
    shipped = run.ema_model().half()
    save_checkpoint(shipped, run.out, extra={k: v for k, v in marker.items() if k != "format"})


def measure(run: Run, marker: dict[str, Any], arc_dir: Path | None) -> dict[str, Any]:
    """One point of the curve: greedy exact match on every evaluation set, at this step."""
    from models.evaluate import evaluation_sets, exact_match_rates

    sets = evaluation_sets(per_family=run.cfg.eval_per_family, arc_dir=arc_dir)
    point: dict[str, Any] = {
        "step": run.step,
        "tokens": run.tokens,
        "cpu_hours": round(run.cpu_hours(), 3),
        "train_loss": round(run.smoothed or float("nan"), 4),
    }
    point.update(exact_match_rates(run.ema_model(), sets, run.vocab))
    marker.setdefault("curve", []).append(point)
    return point


def train_leg(
    cfg: TrainConfig,
    out: Path,
    *,
    minutes: float,
    resume: bool,
    arc_dir: Path | None,
    total_steps: int | None = None,
    max_leg_steps: int = 0,
    device: str = "cpu",
    decay_steps: int | None = None,
    threads: int | None = None,
    save_minutes: float | None = None,
    reweigh: int = 0,
    compose_p: float | None = None,
    bf16: bool | None = None,
    grow: int = 0,
) -> dict[str, Any]:
    """Run one leg: train until ``minutes`` pass (or a signal), saving and measuring on the way.

    ``threads`` and ``save_minutes`` are this leg's (a resumed run reads the rest of its
    settings back, but not these: they are about the machine, not the plan).

    ``decay_steps`` sets the length of the final decay in steps (the run's config then records the
    matching ``decay_frac``): a leg that must ship a decayed model keeps a long constant phase.

    ``reweigh`` > 0 changes the data mix from this leg on: that many held-in chains measure each
    primitive's error with the averaged weights (:func:`models.evaluate.primitive_errors`), and
    chains then draw primitives in proportion to it (clipped to 0.5-2x the mean); ``compose_p``
    sets the share of compositions once the curriculum is over. Both are saved in the run's
    config (a later resume keeps them) and in this leg's ledger entry.

    ``device`` is where this leg trains (``cuda`` when a GPU is lent: bf16 autocast); a run may
    move between devices from leg to leg, and its GPU legs' wall time is counted in ``gpu_hours``.
    ``bf16`` (True / False; None keeps the run's) switches bfloat16 matmuls on the CPU on or off
    from this leg on (saved in the run's config; ledger entries of such legs say ``bf16``).
    ``grow`` > 0 first adds that many decoder layers to a resumed run (:meth:`Run.grow`: the same
    function, more depth; the rate re-warms, and the leg's ledger entry says ``grown``).

    Returns the ledger entry appended to ``mockingbird.json``.
    """
    import torch

    out.mkdir(parents=True, exist_ok=True)
    marker = read_marker(out)
    warm_start, lr_before = False, 0.0

    def this_leg(cfg: TrainConfig) -> TrainConfig:
        cfg.threads = threads or cfg.threads
        cfg.bf16 = cfg.bf16 if bf16 is None else bf16
        cfg.save_minutes = cfg.save_minutes if save_minutes is None else save_minutes
        return cfg

    if resume and (out / STATE_FILE).exists():
        state = torch.load(out / STATE_FILE, weights_only=False, map_location="cpu")
        cfg_saved = config_from_dict(state["config"])
        lr_before = lr_at(state["step"], cfg_saved)  # under the plan the run was saved with
        if total_steps is not None:  # extending (or shortening) the plan is allowed
            cfg_saved.total_steps = total_steps
        cfg = this_leg(cfg_saved)
        run = Run(cfg, out, device)
        run.load_state(state)
    elif resume:
        # no optimiser state (a fresh clone): warm-start from the committed weights
        from transformers import AutoModelForCausalLM

        ledger = marker.get("ledger", [])
        cfg = this_leg(config_from_dict(marker["training"]["config"]) if "training" in marker else cfg)
        if total_steps is not None:
            cfg.total_steps = total_steps
        run = Run(cfg, out, device)
        weights = AutoModelForCausalLM.from_pretrained(
            out, local_files_only=True, dtype=torch.float32
        ).state_dict()
        run.model.load_state_dict(weights)
        run.ema = [p.detach().clone() for p in run.model.parameters()]
        if ledger:
            run.step, run.tokens = ledger[-1]["steps"], ledger[-1]["tokens"]
            run.cpu_before = ledger[-1]["cpu_hours"] * 3600 - cpu_seconds()
            cfg.rewarm_at = run.step
        warm_start = True
    else:
        run = Run(this_leg(cfg), out, device)
        marker = {"format": "compact", "indexed": False}
    if grow and not resume:
        raise ValueError("grow: adds layers to a trained run (resume it); a new run takes its shape")
    grown = run.grow(grow) if grow else None
    if grown:
        cfg.rewarm_at = run.step  # the new layers' first steps: fresh moments, as in a warm start
        logger.info("grown from %(from_layers)d to %(to_layers)d layers at step %(at_step)d", grown)
    if decay_steps is not None:
        cfg.decay_frac = min(1.0, decay_steps / cfg.total_steps)
    if needs_rewarm(lr_at(run.step, cfg), lr_before):  # a decayed run extended
        cfg.rewarm_at = run.step
        logger.info("the run had decayed: the learning rate re-warms from step %d", run.step)
    mix = change_mix(run, reweigh=reweigh, compose_p=compose_p)
    marker["training"] = {
        "parameters": run.parameters,
        "config": {**asdict(cfg), "model": config_dict(cfg.model)},
        "families": sorted(FAMILIES),
        "held_out_families": {k: list(v) for k, v in HELD_OUT.items()},
    }

    stop = {"now": False}

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal %d: saving and ending the leg", signum)
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    leg_started = time.monotonic()
    step0, tokens0, cpu0 = run.step, run.tokens, run.cpu_hours()
    last_save = time.monotonic()
    logger.info(
        "model: %d parameters; step %d of %d; leg of %.0f min",
        run.parameters,
        run.step,
        cfg.total_steps,
        minutes,
    )
    if device == "cpu":
        warn_if_bf16_is_emulated(cfg.bf16)
    while not stop["now"] and run.step < cfg.total_steps and time.monotonic() - leg_started < minutes * 60:
        if max_leg_steps and run.step - step0 >= max_leg_steps:
            break
        run.train_step()
        if run.step % 100 == 0:
            elapsed = time.monotonic() - leg_started
            logger.info(
                "step %d  loss %.3f  %.0f tok/s  lr %.2e  %.1f min  rows %s",
                run.step,
                run.smoothed,
                (run.tokens - tokens0) / elapsed,
                lr_at(run.step, cfg),
                elapsed / 60,
                curriculum_at(run.step, cfg)[0],
            )
        if time.monotonic() - last_save > cfg.save_minutes * 60:
            save_and_measure(run, marker, arc_dir)
            last_save = time.monotonic()
    point = save_and_measure(run, marker, arc_dir)
    leg_hours = (time.monotonic() - leg_started) / 3600
    gpu_before = (marker.get("ledger") or [{}])[-1].get("gpu_hours", 0.0)
    entry = {
        "leg": next_leg(marker.get("ledger", [])),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "steps": run.step,
        "tokens": run.tokens,
        "cpu_hours": round(run.cpu_hours(), 3),
        "gpu_hours": round(gpu_before + (leg_hours if device != "cpu" else 0.0), 3),
        "leg_steps": run.step - step0,
        "leg_tokens": run.tokens - tokens0,
        "leg_cpu_hours": round(run.cpu_hours() - cpu0, 3),
        "leg_wall_minutes": round(leg_hours * 60, 1),
        "warm_start": warm_start,
        **({"mix": mix} if mix else {}),
        **({"bf16": True} if cfg.bf16 and device == "cpu" else {}),
        **({"grown": grown} if grown else {}),
        **{k: v for k, v in point.items() if k not in ("step", "tokens", "cpu_hours")},
    }
    if cfg.ttt_per_family > 0:
        from models.evaluate import evaluation_sets, ttt_rates, ttt_tasks

        held_out = evaluation_sets(per_family=cfg.eval_per_family, arc_dir=None)["held_out"]
        entry["held_out_ttt"] = ttt_rates(out, ttt_tasks(held_out, cfg.ttt_per_family))
    marker.setdefault("ledger", []).append(entry)
    write_shipped(run, marker)
    return entry


def change_mix(run: Run, *, reweigh: int = 0, compose_p: float | None = None) -> dict[str, Any]:
    """Change the run's data mix from its current step on (see :func:`train_leg`); what changed.

    The batches drawn from here on follow the new mix, still a pure function of the seed, the
    step and the config, so a resumed run stays exact.
    """
    mix: dict[str, Any] = {}
    if compose_p is not None:
        if not 0.0 <= compose_p <= 1.0:
            raise ValueError(f"--compose-p {compose_p}: a share, between 0 and 1")
        run.cfg.compose_p = (run.cfg.compose_p[0], compose_p)
        mix["compose_p"] = compose_p
    if reweigh > 0:
        from models.evaluate import primitive_errors, weights_from_errors

        errors = primitive_errors(run.ema_model(), run.vocab, tasks=reweigh)
        run.cfg.primitive_weights = weights_from_errors(errors)
        mix["held_in_errors"] = {name: round(e, 3) for name, (e, _) in sorted(errors.items())}
        mix["primitive_weights"] = dict(sorted(run.cfg.primitive_weights.items()))
        mix["reweigh_tasks"] = reweigh
        logger.info(
            "data mix reweighed from %d held-in chains: %s",
            reweigh,
            json.dumps(mix["primitive_weights"]),
        )
    if mix:
        mix["from_step"] = run.step
    return mix


def save_and_measure(run: Run, marker: dict[str, Any], arc_dir: Path | None) -> dict[str, Any]:
    """Save the resumable state, measure a point of the curve, write the shipped checkpoint."""
    run.save_state()
    point = measure(run, marker, arc_dir)
    write_shipped(run, marker)
    logger.info("measured at step %d: %s", run.step, json.dumps(point))
    return point


def shape(
    cfg: TrainConfig, *, hidden: int | None = None, layers: int | None = None, compose: bool = True
) -> TrainConfig:
    """``cfg`` with a new run's shape and breadth: width (heads keep head dim 32, MLP 4x), depth,
    and ``compose=False`` for single primitives only (the breadth ablation)."""
    if hidden:
        cfg.model.hidden_size, cfg.model.num_heads = hidden, max(1, hidden // 32)
        cfg.model.intermediate_size = 4 * hidden
    if layers:
        cfg.model.num_layers = layers
    if not compose:
        cfg.compose_p = (0.0, 0.0)
    return cfg


def smoke_config() -> TrainConfig:
    """A tiny model and a few steps: exercises every line in seconds."""
    tiny = EmbeddedConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=1024)
    return TrainConfig(
        model=tiny,
        batch_size=4,
        warmup_steps=2,
        total_steps=6,
        pool=2,
        curriculum_steps=4,
        eval_per_family=2,
        ttt_per_family=0,
    )


def main(argv: list[str] | None = None) -> int:
    from models.evaluate import DEFAULT_ARC

    parser = leg_parser("python -m models.train", __doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, help="hidden size of a new run (heads keep head dim 32)")
    parser.add_argument("--layers", type=int, help="layers of a new run")
    parser.add_argument(
        "--no-compose",
        action="store_true",
        help="a new run on single primitives only, no compositions (the breadth ablation)",
    )
    parser.add_argument(
        "--decay-steps", type=int, help="the final decay's length in steps (default: 15 %% of the total)"
    )
    parser.add_argument(
        "--eval-arc", type=Path, default=DEFAULT_ARC, help="1D-ARC folder (skipped when absent)"
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device of this leg: cpu (default) or cuda (a lent GPU)"
    )
    parser.add_argument(
        "--reweigh",
        type=int,
        default=0,
        metavar="N",
        help="from this leg on, draw primitives in proportion to their error on N held-in chains",
    )
    parser.add_argument(
        "--compose-p", type=float, help="from this leg on, the share of compositions after the curriculum"
    )
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        help="train on the CPU with bfloat16 matmuls from this leg on (kept by the run; --no-bf16 stops)",
    )
    parser.add_argument(
        "--grow-layers",
        type=int,
        default=0,
        metavar="N",
        help="with --resume: first add N decoder layers (the same function, more depth)",
    )
    args = parser.parse_args(argv)
    if args.grow_layers and not args.resume:
        parser.exit(2, "error: --grow-layers: grows a trained run (--resume); a new run takes --layers\n")
    if not 0 <= args.grow_layers <= 64:
        parser.exit(2, f"error: --grow-layers {args.grow_layers}: expected 0-64 new layers\n")
    if args.compose_p is not None and not 0.0 <= args.compose_p <= 1.0:
        parser.exit(2, f"error: --compose-p {args.compose_p}: a share, between 0 and 1\n")
    if args.reweigh < 0:
        parser.exit(2, f"error: --reweigh {args.reweigh}: a number of tasks, 0 or more\n")
    if args.reweigh and not args.resume:  # an untrained model errs everywhere: nothing to weigh
        parser.exit(2, "error: --reweigh: weighs a trained run's errors; use it with --resume\n")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.device != "cpu":
        import torch

        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            parser.exit(2, f"error: --device {args.device}: not available here (cpu, or cuda with a GPU)\n")
    cfg = smoke_config() if args.smoke else TrainConfig()
    cfg.seed = args.seed
    if args.total_steps is not None:
        cfg.total_steps = args.total_steps
    shape(cfg, hidden=args.hidden, layers=args.layers, compose=not args.no_compose)
    out = args.resume or args.out
    if args.resume and not (out / MARKER).exists():
        parser.exit(2, f"error: --resume {out}: no {MARKER} there (start a run with --out)\n")
    if args.resume and (args.hidden or args.layers or args.no_compose):
        parser.exit(2, "error: --hidden/--layers/--no-compose: set a new run's shape (--out); "
                    "a resumed run keeps its own\n")  # fmt: skip
    with hold_run(parser, args):
        entry = train_leg(
            cfg,
            out,
            minutes=args.minutes,
            resume=args.resume is not None,
            arc_dir=None if args.smoke else args.eval_arc,
            total_steps=args.total_steps,
            max_leg_steps=args.steps,
            device=args.device,
            decay_steps=args.decay_steps,
            threads=args.threads,
            save_minutes=args.save_minutes,
            reweigh=args.reweigh,
            compose_p=args.compose_p,
            bf16=args.bf16,
            grow=args.grow_layers,
        )
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
