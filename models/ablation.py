"""The prior's ablation: model size and breadth, each apart, at one fixed training budget.

Commands::

    python -m models.ablation --out runs/ablation --steps 3000                 # ~2 CPU-hours an arm
    python -m models.ablation --out runs/ablation --steps 3000 --device cuda   # minutes on a lent GPU
    python -m models.ablation --out /tmp/abl --smoke                           # seconds (a test runs it)

Each arm is a new run of :mod:`models.train` in ``OUT/ARM`` with the same seed, the same
schedule (warm-up, constant, the final decay) and the same number of steps. The batch of a step
is a pure function of the seed and the step, so ``base``, ``small`` and ``large`` see exactly the
same episodes and differ only in shape; ``narrow`` is the base shape on single primitives (no
compositions: the breadth the issue-8 model had, one rule per task). Arms already finished are
read back, an interrupted one resumes, so the command can be run again after a stop. Prints the
table of the arms' final measurements (held-out families, held-in, 1D-ARC, loss after k
demonstrations) and writes it to ``OUT/ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("models.ablation")


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One run of the ablation: what it changes from the base run."""

    name: str  # folder and row name
    what: str  # the change, in words (the table's second column)
    hidden: int | None = None  # hidden size (None: the base's); heads keep head dim 32
    layers: int | None = None  # layers (None: the base's)
    compose: bool = True  # False: single primitives only


#: The arms of the full ablation (the shipped shape is 192 wide, 6 layers).
ARMS: tuple[Arm, ...] = (
    Arm(name="base", what="shipped shape (192 x 6), composed families"),
    Arm(name="small", what="smaller (128 x 4)", hidden=128, layers=4),
    Arm(name="large", what="larger (256 x 8)", hidden=256, layers=8),
    Arm(name="narrow", what="shipped shape, single primitives only", compose=False),
)

#: The smoke arms: the smoke model (32 x 2) and shapes around it, for a run of seconds.
SMOKE_ARMS: tuple[Arm, ...] = (
    Arm(name="base", what="smoke shape (32 x 2)"),
    Arm(name="small", what="smaller (32 x 1)", layers=1),
    Arm(name="narrow", what="smoke shape, single primitives only", compose=False),
)


def arm_config(arm: Arm, *, smoke: bool, steps: int, seed: int = 0) -> Any:
    """The :class:`models.train.TrainConfig` of ``arm``'s run."""
    from models.train import TrainConfig, shape, smoke_config

    cfg = smoke_config() if smoke else TrainConfig()
    cfg.seed, cfg.total_steps = seed, steps
    return shape(cfg, hidden=arm.hidden, layers=arm.layers, compose=arm.compose)


class Interrupted(Exception):
    """A leg ended before its arm reached the budget (a signal): run the command again to resume."""


def run_arm(
    arm: Arm, out: Path, *, steps: int, smoke: bool, device: str, arc_dir: Path | None
) -> dict[str, Any]:
    """Train ``arm`` to ``steps`` in ``out / arm.name`` (resuming or reading back) and return its
    last ledger entry.

    Raises:
        Interrupted: If the leg was stopped (SIGTERM/SIGINT) before the budget; it saved first.
    """
    from models.embedded import MARKER
    from models.train import train_leg

    folder = out / arm.name
    ledger = _ledger(folder)
    if not ledger or int(ledger[-1]["steps"]) < steps:
        logger.info("arm %s: training to step %d in %s", arm.name, steps, folder)
        train_leg(
            arm_config(arm, smoke=smoke, steps=steps),
            folder,
            minutes=7 * 24 * 60.0,  # the budget is in steps; a stop ends the leg early
            resume=(folder / MARKER).exists(),
            arc_dir=arc_dir,
            total_steps=steps,
            device=device,
        )
        ledger = _ledger(folder)
        if int(ledger[-1]["steps"]) < steps:
            raise Interrupted(f"arm {arm.name} stopped at step {ledger[-1]['steps']} of {steps}")
    return dict(ledger[-1])


def _ledger(folder: Path) -> list[dict[str, Any]]:
    from models.embedded import MARKER

    path = folder / MARKER
    if not path.exists():
        return []
    ledger: list[dict[str, Any]] = json.loads(path.read_text()).get("ledger", [])
    return ledger


def row(arm: Arm, entry: dict[str, Any], params: int) -> dict[str, Any]:
    """One table row from an arm's last ledger entry."""
    metrics = {k: entry.get(k) for k in ("held_out", "held_in", "arc", "bundled")}
    return {
        "arm": arm.name,
        "what": arm.what,
        "params": params,
        "steps": entry.get("steps"),
        "tokens": entry.get("tokens"),
        "cpu_hours": entry.get("cpu_hours"),
        "gpu_hours": entry.get("gpu_hours"),
        **metrics,
        "loss_by_demos": entry.get("held_out_loss_by_demos"),
    }


def _params(folder: Path) -> int:
    from models.embedded import MARKER

    return int(json.loads((folder / MARKER).read_text())["training"]["parameters"])


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (percentages for accuracies)."""

    def pct(x: Any) -> str:
        return "-" if x is None else f"{100 * float(x):.1f} %"

    lines = [
        "| arm | change | params | steps | tokens | CPU-h | held-out | held-in | 1D-ARC | loss, 3 demos |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        loss = (r.get("loss_by_demos") or {}).get("3")
        lines.append(
            f"| {r['arm']} | {r['what']} | {r['params'] / 1e6:.2f} M | {r['steps']} | "
            f"{(r['tokens'] or 0) / 1e6:.1f} M | {r['cpu_hours']} | {pct(r['held_out'])} | "
            f"{pct(r['held_in'])} | {pct(r['arc'])} | {'-' if loss is None else f'{loss:.3f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from models.evaluate import DEFAULT_ARC

    parser = argparse.ArgumentParser(prog="python -m models.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the arms' runs")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of every arm (default 3000)")
    parser.add_argument("--arms", help="comma-separated arms to run (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (a lent GPU)")
    parser.add_argument("--smoke", action="store_true", help="tiny arms, a few steps (for tests)")
    parser.add_argument(
        "--eval-arc", type=Path, default=DEFAULT_ARC, help="1D-ARC folder (skipped when absent)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    arms = SMOKE_ARMS if args.smoke else ARMS
    if args.arms:
        names = [a.strip() for a in args.arms.split(",") if a.strip()]
        known = {a.name: a for a in arms}
        if unknown := [n for n in names if n not in known]:
            parser.exit(2, f"error: --arms: unknown arm(s) {', '.join(unknown)}; known: {', '.join(known)}\n")
        arms = tuple(known[n] for n in names)
    if args.steps < 1:
        parser.exit(2, "error: --steps: must be at least 1\n")
    if args.device != "cpu":
        import torch

        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            parser.exit(2, f"error: --device {args.device}: not available here (cpu, or cuda with a GPU)\n")
    steps = min(args.steps, 6) if args.smoke else args.steps
    arc_dir = None if args.smoke else args.eval_arc
    rows = []
    for arm in arms:
        try:
            entry = run_arm(arm, args.out, steps=steps, smoke=args.smoke, device=args.device, arc_dir=arc_dir)
        except Interrupted as stopped:
            print(f"{stopped}; saved: run the same command again to resume", file=sys.stderr)
            return 1
        rows.append(row(arm, entry, _params(args.out / arm.name)))
    (args.out / "ablation.json").write_text(json.dumps({"steps": steps, "rows": rows}, indent=2) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
