"""``python -m graph.chaos``: run the reliability suite and print tried / survived / lost.

Examples::

    python -m graph.chaos                               # every family, seed 0, 240 s in all
    python -m graph.chaos --family kill --seed 3 --budget-seconds 120
    python -m graph.chaos --quick --json chaos.json     # the small CI configuration

Exit codes: 0 every case survived, 1 a case was lost, 2 a usage mistake.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from graph.chaos import FAMILIES, WEIGHTS, Case, Env, FamilyReport
from graph.errors import SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m graph.chaos",
        description="The reliability suite: break the system on purpose, count what survives.",
    )
    parser.add_argument(
        "--family", action="append", help=f"run only this family (repeatable): {', '.join(FAMILIES)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=240.0,
        dest="budget_s",
        help="time for the whole suite, shared among the families by weight (default 240)",
    )
    parser.add_argument("--quick", action="store_true", help="a few cases per family (the CI configuration)")
    parser.add_argument("--json", dest="json_out", help="also write the reports to this JSON file")
    parser.add_argument("--workdir", help="keep the work files here (default: a temporary folder, removed)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each case as it ends")
    return parser


def run_family(name: str, env: Env) -> FamilyReport:
    """Run one family (``name`` in :data:`FAMILIES`)."""
    module, _, fn = FAMILIES[name].partition(":")
    started = time.monotonic()
    report: FamilyReport = getattr(importlib.import_module(module), fn)(env)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def run_suite(
    families: list[str],
    *,
    seed: int,
    budget_s: float,
    workdir: Path,
    quick: bool = False,
    verbose: bool = False,
) -> list[FamilyReport]:
    """Run ``families`` in order; each gets its weighted share of ``budget_s``."""
    from rich.console import Console

    console = Console(stderr=True)
    started = time.monotonic()
    warm_up(workdir)
    ready_s = time.monotonic() - started
    console.print(f"[dim]fork server ready in {ready_s:.0f}s (not counted in the budgets)[/]")
    total = sum(WEIGHTS[f] for f in families)
    reports = []
    for name in families:
        share = budget_s * WEIGHTS[name] / total
        fam_dir = workdir / name
        fam_dir.mkdir(parents=True, exist_ok=True)

        def show(case: Case, name: str = name) -> None:
            if verbose or not case.survived:
                mark = "[green]✔[/]" if case.survived else "[red]✘[/]"
                console.print(
                    f"{mark} {name}: {case.name} ({case.seconds:.1f}s) {case.detail}",
                    markup=True,
                    highlight=False,
                    soft_wrap=True,
                )

        env = Env(workdir=fam_dir, seed=seed, budget_s=share, quick=quick, on_case=show)
        console.print(f"[bold]{name}[/] [dim](budget {share:.0f}s)[/]")
        reports.append(run_family(name, env))
    return reports


def warm_up(workdir: Path) -> None:
    """Start the fork server (it imports torch, transformers, peft, LangGraph once) before the
    families' clocks start: on a busy machine that alone can take most of a small budget."""
    from graph.chaos.procs import Children

    Children(workdir).run("graph.chaos.procs:noop", {}, timeout_s=600)


def table(reports: list[FamilyReport]) -> object:
    """The summary table (rich)."""
    from rich.table import Table

    out = Table(title="Reliability suite")
    for col, justify in (
        ("family", "left"),
        ("tried", "right"),
        ("survived", "right"),
        ("lost", "right"),
        ("seconds", "right"),
        ("lost cases", "left"),
    ):
        out.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in reports:
        lost = "; ".join(f"{c.name}: {c.detail}" for c in r.cases if not c.survived)
        pct = f"{r.survived} ({100 * r.survived / r.tried:.0f} %)" if r.tried else "0"
        out.add_row(
            r.family,
            str(r.tried),
            pct,
            f"[red]{r.lost}[/]" if r.lost else "0",
            f"{r.seconds:.0f}",
            lost[:400] or "-",
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        families = args.family or list(FAMILIES)
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise SettingsError(f"--family: unknown {', '.join(unknown)}; expected {', '.join(FAMILIES)}")
        if args.budget_s <= 0:
            raise SettingsError(f"--budget-seconds: must be positive, got {args.budget_s:g}")
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from rich.console import Console

    # As graph.run does: strict checkpoint deserialization (children inherit it).
    os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mockingbird-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        reports = run_suite(
            families,
            seed=args.seed,
            budget_s=args.budget_s,
            workdir=workdir,
            quick=args.quick,
            verbose=args.verbose,
        )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    Console().print(table(reports))
    lost = sum(r.lost for r in reports)
    print(
        f"{sum(r.tried for r in reports)} cases, {lost} lost, seed {args.seed}, "
        f"{time.monotonic() - started:.0f}s"
    )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"seed": args.seed, "families": [r.summary() for r in reports]}, indent=2) + "\n",
            encoding="utf-8",
        )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
