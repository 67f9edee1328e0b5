"""``python -m graph.bench``: exact-match accuracy per task type, with cost, on a folder of tasks.

Example::

    python -m graph.bench --tasks ../shared/benchmarks/1d-arc --limit 10 --json bench.json
    python -m graph.bench --tasks ../shared/benchmarks/1d-arc --model embedded,random:embedded

Every task file under ``--tasks`` (any supported format; sub-folders are task types) is run
through the graph (for each model of a comma-separated ``--model`` list, side by side); the table
shows per type: accuracy with a 95 % bootstrap interval over
queries, seconds and tokens per query, and GPT-4's published score where one exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel
from rich.table import Table

from graph.cli_common import add_context_flags, context_from_args, run_cli, setup_logging
from graph.context import Context
from graph.errors import SettingsError
from graph.runner import QueryResult
from graph.settings import load_dotenv_file
from models.base import ModelBackend
from tasks.schema import Task

#: GPT-4, direct grid prompting (Xu et al. 2023, "LLMs and the Abstraction and Reasoning Corpus"),
#: exact match per 1D-ARC type, in percent.
GPT4_1DARC = {
    "1d_denoising_1c": 36.0, "1d_fill": 66.0, "1d_flip": 70.0, "1d_hollow": 56.0, "1d_move_1p": 66.0,
    "1d_move_2p": 26.0, "1d_move_dp": 22.0, "1d_pcopy_1c": 36.0, "1d_recolor_cnt": 28.0,
}  # fmt: skip


class TypeRow(BaseModel):
    """One row of the benchmark table."""

    type: str
    queries: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    seconds_per_query: float
    tokens_per_query: float
    gpt4: float | None = None


class BenchReport(BaseModel):
    """What ``--json`` writes."""

    model: str
    strategy: str
    tasks_dir: str
    rows: list[TypeRow]
    overall: TypeRow
    results: list[QueryResult]


def summarize(name: str, results: list[QueryResult], gpt4: float | None = None) -> TypeRow:
    """Accuracy, bootstrap interval and costs over ``results``."""
    from tasks.scoring import bootstrap_ci

    flags = [bool(r.correct) for r in results]
    lo, hi = bootstrap_ci(flags)
    n = max(len(results), 1)
    return TypeRow(
        type=name,
        queries=len(results),
        correct=sum(flags),
        accuracy=sum(flags) / n,
        ci_low=lo,
        ci_high=hi,
        seconds_per_query=sum(r.seconds for r in results) / n,
        tokens_per_query=sum(r.tokens for r in results) / n,
        gpt4=gpt4,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graph.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", required=True, help="folder (or file) of tasks; sub-folders = types")
    parser.add_argument("--limit", type=int, help="at most this many tasks per type")
    parser.add_argument("--json", dest="json_out", help="write the numbers to this JSON file")
    parser.add_argument("--k-shot", type=int, default=3, help="demonstrations from BBH/CSV files")
    add_context_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    load_dotenv_file()
    setup_logging(args.verbose)
    return run_cli(lambda: _bench(args))


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from graph.router import check_strategy
    from nodes.common import resolve_model
    from tasks.loaders import load_any

    if args.limit is not None and args.limit < 1:
        raise SettingsError(f"--limit: must be at least 1, got {args.limit}")
    specs = [s.strip() for s in (args.model or "").split(",") if s.strip()] or [None]
    strategies = [s.strip() for s in (args.strategy or "").split(",") if s.strip()] or [None]
    # every model with every strategy, in the order given: one table each, then side by side
    contexts = [context_from_args(args, model=m, strategy=st) for m in specs for st in strategies]
    tasks = load_any(Path(args.tasks), k_shot=args.k_shot)
    by_type: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        by_type[t.type or "untyped"].append(t)
    if args.limit:
        by_type = defaultdict(list, {k: v[: args.limit] for k, v in by_type.items()})
    # Only queries with a target can be scored; a benchmark without targets measures nothing.
    jobs = [
        (t, i)
        for k in sorted(by_type)
        for t in by_type[k]
        for i, q in enumerate(t.test)
        if q.target is not None
    ]
    if not jobs:
        raise SettingsError(f"--tasks: no test queries with targets under {args.tasks}")
    # Load every model first: a typo in the third spec fails before an hour of benchmarking.
    models = [resolve_model(c, None) for c in contexts]
    for model, c in zip(models, contexts, strict=True):
        check_strategy(c.strategy, can_adapt=model.capabilities.adapt, model=model.name)
    reports = [
        bench_one(model, ctx, jobs, str(args.tasks)) for model, ctx in zip(models, contexts, strict=True)
    ]
    console = Console()
    for report in reports:
        console.print(detail_table(report))
    if len(reports) > 1:
        console.print(comparison_table(reports))
    if args.json_out:
        payload = {"runs": [r.model_dump(mode="json") for r in reports]}
        Path(args.json_out).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def bench_one(model: ModelBackend, ctx: Context, jobs: list[tuple[Task, int]], tasks_dir: str) -> BenchReport:
    """Run every job through a graph bound to ``model``; summarise per type and overall."""
    from langgraph.store.memory import InMemoryStore
    from rich.console import Console
    from rich.progress import Progress

    from graph.builder import build_graph
    from graph.runner import run_query

    # No checkpointer: a benchmark is not resumed; an in-memory store keeps per-task evidence.
    graph = build_graph(model=model, store=InMemoryStore())
    results: dict[str, list[QueryResult]] = defaultdict(list)
    with Progress(console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task(f"{model.name} · {ctx.strategy}", total=len(jobs))
        for task, index in jobs:
            results[task.type or "untyped"].append(run_query(graph, task, index, context=ctx))
            progress.advance(bar)
    rows = [summarize(k, results[k], GPT4_1DARC.get(k)) for k in sorted(results)]
    everything = [r for k in sorted(results) for r in results[k]]
    gpt4_known = [row.gpt4 for row in rows if row.gpt4 is not None]
    overall = summarize(
        "overall", everything, sum(gpt4_known) / len(gpt4_known) if len(gpt4_known) == len(rows) else None
    )
    return BenchReport(
        model=model.name,
        strategy=ctx.strategy,
        tasks_dir=tasks_dir,
        rows=rows,
        overall=overall,
        results=everything,
    )


def detail_table(report: BenchReport) -> Table:
    """Per type: accuracy with its interval, cost per query, GPT-4's score."""
    table = Table(title=f"{report.model} · strategy {report.strategy} · {report.tasks_dir}")
    for col in ["type", "n", "exact match", "95% CI", "s/query", "tokens/query", "GPT-4"]:
        table.add_column(col, justify="left" if col == "type" else "right")
    for row in [*report.rows, report.overall]:
        table.add_row(
            row.type,
            str(row.queries),
            f"{row.accuracy:.1%}",
            f"{row.ci_low:.0%}–{row.ci_high:.0%}",
            f"{row.seconds_per_query:.2f}",
            f"{row.tokens_per_query:.0f}",
            "" if row.gpt4 is None else f"{row.gpt4:.1f}%",
            style="bold" if row.type == "overall" else None,
        )
    return table


def comparison_table(reports: list[BenchReport]) -> Table:
    """Models side by side (the ablation view): accuracy [95 % CI] per type."""
    table = Table(title="side by side: exact match [95% CI]")
    table.add_column("type")
    for report in reports:
        table.add_column(f"{report.model} · {report.strategy}", justify="right")
    table.add_column("GPT-4", justify="right")
    for i, row in enumerate([*reports[0].rows, reports[0].overall]):
        cells = []
        for report in reports:
            r = [*report.rows, report.overall][i]
            cells.append(f"{r.accuracy:.0%} [{r.ci_low:.0%}, {r.ci_high:.0%}]")
        table.add_row(
            row.type,
            *cells,
            "" if row.gpt4 is None else f"{row.gpt4:.1f}%",
            style="bold" if row.type == "overall" else None,
        )
    return table


if __name__ == "__main__":
    sys.exit(main())
