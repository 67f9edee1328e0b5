"""``python -m graph.bench``: exact-match accuracy per task type, with cost, on a folder of tasks.

Example::

    python -m graph.bench --tasks ../shared/benchmarks/1d-arc --limit 10 --json bench.json
    python -m graph.bench --tasks ../shared/benchmarks/1d-arc --model embedded,random:embedded
    python -m graph.bench --tasks DIR --strategy icl,ttt,ttt-noaug --json bench.json
    python -m graph.bench --tasks DIR --strategy all --plot docs/router.png

Every task file under ``--tasks`` (any supported format; sub-folders are task types) is run
through the graph (for each model of a comma-separated ``--model`` list and each strategy of a
comma-separated ``--strategy`` list, side by side); the table shows per type: accuracy with a
95 % Wilson interval over queries, seconds and tokens per query, and GPT-4's published score
where one exists. Besides the graph's strategies, ``--strategy`` takes bench-only *variants*
(:data:`VARIANTS`): ``ttt-noaug`` is ``ttt`` with ``ttt_augment`` off (the "without augmentation
and voting" arm). The JSON has every run and, per model, each run's accuracy and seconds relative
to that model's ``icl`` run (``vs_icl``: the TTT/ICL ratio).

``--strategy all`` runs every fixed strategy the model supports and the router (``auto``) on the
same queries, adds the **oracle** (each query's cheapest correct fixed strategy in hindsight) and
prints how the router stands against the best fixed strategy (:mod:`graph.bench_report`);
``--plot PATH`` draws accuracy against seconds per query. The DG-DIFF column is the mean, over the
run's tasks, of the selection-minus-generation accuracy the ``select`` node measured.

Tables (CSV, JSONL, Parquet; each file is its own type): ``--seeds N`` draws N demonstration
splits per table (seeds ``--seed`` .. ``--seed + N - 1``; task ids ``<table>@seed<s>``),
``--queries N`` caps the queries of each split, and ``--baselines knn,logreg,gbm`` (classification)
or ``knnreg,ridge`` (regression) fits scikit-learn on exactly the demonstrations the model saw and
answers the same queries (:mod:`graph.baselines`); each baseline is a run like a strategy's, of
model ``sklearn``. For regression tables accuracy means *within tolerance* (``--tolerance``) and
the tables add mean absolute error and R² (an unparseable answer counts as the demonstrations'
mean label)::

    python -m graph.bench --tasks DIR --k-shot 16 --seeds 5 --queries 50 --baselines knn,logreg,gbm
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.table import Table

from graph.bench_report import (
    ALL_FIXED,
    Calibration,
    Point,
    RouterStanding,
    calibration,
    expand_strategies,
    oracle,
    standing,
)
from graph.cli_common import (
    add_context_flags,
    add_table_flags,
    check_output_file,
    cli_main,
    context_from_args,
    task_split,
)
from graph.context import Context
from graph.errors import SettingsError
from graph.runner import QueryResult
from graph.settings import database
from graph.storage import Database, open_store
from graph.workers import Throughput, parse_workers
from models.base import ModelBackend
from tasks.schema import Task

#: GPT-4, direct grid prompting (Xu et al. 2023, "LLMs and the Abstraction and Reasoning Corpus"),
#: exact match per 1D-ARC type, in percent.
GPT4_1DARC = {
    "1d_denoising_1c": 36.0, "1d_fill": 66.0, "1d_flip": 70.0, "1d_hollow": 56.0, "1d_move_1p": 66.0,
    "1d_move_2p": 26.0, "1d_move_dp": 22.0, "1d_pcopy_1c": 36.0, "1d_recolor_cnt": 28.0,
}  # fmt: skip


#: Bench-only strategy variants: name -> (graph strategy, Context fields it sets).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ttt-noaug": ("ttt", {"ttt_augment": False}),
    "ttt-trial": ("ttt", {"ttt_recipe": "trial"}),
    "ttt-plain": ("ttt", {"ttt_recipe": "plain"}),
    "ttt-adaptive": ("ttt", {"ttt_recipe": "adaptive"}),
    "ttt-prior": ("ttt", {"ttt_prior_votes": "on"}),
    "ttt-noprior": ("ttt", {"ttt_prior_votes": "off"}),
    "icl-views": ("icl", {"sample_views": "on"}),
    "icl-temp": ("icl", {"sample_views": "off"}),
}


def split_variant(name: str) -> tuple[str, dict[str, Any]]:
    """The graph strategy and Context overrides of a ``--strategy`` entry (variants expanded)."""
    return VARIANTS.get(name, (name, {}))


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
    mae: float | None = None  # regression tables: mean absolute error
    r2: float | None = None  # regression tables: coefficient of determination


class BenchReport(BaseModel):
    """What ``--json`` writes."""

    model: str
    strategy: str
    variant: str = ""  # the --strategy entry (a bench variant such as ttt-noaug, else the strategy)
    tasks_dir: str
    rows: list[TypeRow]
    overall: TypeRow
    results: list[QueryResult]
    dg_diff: float | None = None  # mean DG-DIFF over the tasks where this run measured one
    dg_tasks: int = 0  # how many tasks that mean is over
    calibration: Calibration | None = None  # how often an answer at the router's threshold was wrong


def summarize(
    name: str,
    results: list[QueryResult],
    gpt4: float | None = None,
    *,
    regression_means: dict[str, float] | None = None,
) -> TypeRow:
    """Accuracy, Wilson interval and costs over ``results``.

    Args:
        name: The row's name.
        results: The queries' results.
        gpt4: GPT-4's published score, if any.
        regression_means: Task id -> mean demonstration label of the regression tasks: their
            results also get MAE and R² (an unparseable answer counts as that mean).
    """
    from tasks.scoring import as_number, proportion_ci, regression_metrics

    mae = r2 = None
    numeric = [r for r in results if regression_means and r.task_id in regression_means]
    if numeric and len(numeric) == len(results):
        predicted = [
            p if (p := as_number(r.answer)) is not None else regression_means[r.task_id]  # type: ignore[index]
            for r in numeric
        ]
        metrics = regression_metrics(predicted, [float(as_number(r.target) or 0.0) for r in numeric])
        mae, r2 = round(metrics["mae"], 4), round(metrics["r2"], 4)
    flags = [bool(r.correct) for r in results]
    lo, hi = proportion_ci(flags)
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
        mae=mae,
        r2=r2,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graph.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", required=True, help="folder (or file) of tasks; sub-folders = types")
    parser.add_argument("--limit", type=int, help="at most this many tasks per type")
    parser.add_argument("--json", dest="json_out", help="write the numbers to this JSON file")
    parser.add_argument("--k-shot", type=int, default=3, help="demonstrations from BBH files and tables")
    parser.add_argument("--plot", help="with several strategies: write accuracy vs cost (PNG) here")
    parser.add_argument("--seeds", type=int, default=1, help="tables: demonstration splits per table (1)")
    parser.add_argument("--queries", type=int, help="tables: at most this many queries per split")
    parser.add_argument(
        "--baselines",
        help="tables: scikit-learn baselines on the same demonstrations and queries, comma-separated: "
        "knn, logreg, gbm, majority (classification); knnreg, ridge, mean (regression)",
    )
    add_table_flags(parser)
    parser.add_argument(
        "--workers",
        help="run the queries in N processes sharing one database (--db: postgresql://... or SQLite); "
        "a comma list such as 1,2 measures queries per second for each count",
    )
    add_context_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return cli_main(build_parser(), _bench, argv)


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from graph.baselines import parse_baselines
    from graph.context import resolve_model
    from graph.router import check_strategy

    if args.limit is not None and args.limit < 1:
        raise SettingsError(f"--limit: must be at least 1, got {args.limit}")
    # Outputs are checked before the run: a missing folder must not cost a whole benchmark.
    json_out = check_output_file(args.json_out, "--json")
    plot_out = check_output_file(args.plot, "--plot")
    if args.seeds < 1:
        raise SettingsError(f"--seeds: must be at least 1, got {args.seeds}")
    if args.queries is not None and args.queries < 1:
        raise SettingsError(f"--queries: must be at least 1, got {args.queries}")
    baselines = parse_baselines(args.baselines)
    specs = [s.strip() for s in (args.model or "").split(",") if s.strip()] or [None]
    requested = [s.strip() for s in (args.strategy or "").split(",") if s.strip()] or [None]
    tasks = load_splits(Path(args.tasks), args)
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
    # Every model with every strategy, in the order given: one table each, then side by side.
    # Models load first: a typo in the third spec fails before an hour of benchmarking.
    runs: list[tuple[ModelBackend, Context, str]] = []
    for m in specs:
        model = resolve_model(context_from_args(args, model=m, strategy="icl"), None)
        names = (
            expand_strategies([s for s in requested if s], can_adapt=model.capabilities.adapt)
            if any(requested)
            else [None]
        )
        for st in names:
            base, extra = split_variant(st) if st else (None, {})
            if base == "expert":
                raise SettingsError("--strategy expert: the bench has no one to ask; use graph.review")
            ctx = context_from_args(args, model=m, strategy=base, **extra)
            check_strategy(ctx.strategy, can_adapt=model.capabilities.adapt, model=model.name)
            runs.append((model, ctx, st or ctx.strategy))
    if args.plot and len(runs) < 2:
        raise SettingsError("--plot: needs at least two strategies or models to compare")
    counts = parse_workers(args.workers)
    throughput: list[dict[str, Any]] = []
    if counts:
        shared = database(args.db) if args.db else None
        reports = []
        for model, ctx, st in runs:
            for n in counts:
                label = f"{st}@{n}w" if len(counts) > 1 else st
                report, row = bench_workers(model, ctx, jobs, str(args.tasks), shared, n, variant=label)
                reports.append(report)
                throughput.append({"model": model.name, "variant": st, **row.model_dump(), "lost": row.lost})
    else:
        reports = [bench_one(model, ctx, jobs, str(args.tasks), variant=st) for model, ctx, st in runs]
    reports += [bench_baseline(name, jobs, str(args.tasks)) for name in baselines]
    reports = [r for r in reports if r.results]  # a baseline that fits none of the tables
    console = Console()
    if throughput:
        console.print(throughput_table(throughput))
    for report in reports:
        console.print(detail_table(report))
    console.print(calibration_table(reports))
    if len(reports) > 1:
        console.print(comparison_table(reports))
    points, standings = compare_strategies(reports, every_run=bool(baselines))
    if points:
        console.print(strategy_table(points, reports))
    for model_name, stand in standings.items():
        console.print(standing_line(model_name, stand))
    if args.plot:
        from graph.bench_report import plot

        many = len({r.model for r in reports}) > 1
        drawn = [_point(f"{r.model} · {r.variant}" if many else r.variant, r.overall) for r in reports] + [
            p["oracle"].model_copy(update={"label": f"{m} · oracle" if many else "oracle"})
            for m, p in points.items()
            if "oracle" in p
        ]
        title = f"{', '.join(dict.fromkeys(r.model for r in reports))} · {args.tasks}"
        plot(drawn, plot_out or Path(args.plot), title)
        console.print(f"plot: {args.plot}")
    if json_out is not None:
        payload = {
            "runs": [r.model_dump(mode="json") for r in reports],
            "vs_icl": vs_icl(reports),
            "strategies": {
                m: {k: p.model_dump(mode="json") for k, p in pts.items()} for m, pts in points.items()
            },
            "router": {m: x.model_dump(mode="json") for m, x in standings.items()},
            "throughput": throughput,
        }
        try:
            json_out.write_text(json.dumps(payload, indent=2) + "\n")
        except OSError as exc:
            raise SettingsError(f"--json: cannot write {json_out}: {exc.strerror}") from None
    return 0


def load_splits(path: Path, args: argparse.Namespace) -> list[Task]:
    """The tasks under ``path``; each table once per seed of ``--seeds`` (ids ``<table>@seed<s>``)."""
    from graph.cli_common import context_from_args
    from tasks.loaders import load_any
    from tasks.tabular import TABLE_SUFFIXES

    base = context_from_args(args, strategy="icl").seed
    tasks: list[Task] = []
    for i in range(args.seeds):
        for task in load_any(path, task_split(args, seed=base + i, queries=args.queries)):
            table = task.kind == "tabular" and Path(task.source or "").suffix.lower() in TABLE_SUFFIXES
            if not table and i > 0:
                continue  # other task files have no split to redraw
            if table and args.seeds > 1:
                task = task.model_copy(update={"id": f"{task.id}@seed{base + i}"})
            tasks.append(task)
    return tasks


def regression_means(tasks: list[Task]) -> dict[str, float]:
    """Task id -> mean demonstration label, for the regression tables among ``tasks``."""
    from tasks.scoring import as_number, is_regression

    out = {}
    for t in tasks:
        if is_regression(t):
            values = [v for e in t.train if (v := as_number(e.output)) is not None]
            out[t.id] = sum(values) / len(values) if values else 0.0
    return out


def bench_baseline(name: str, jobs: list[tuple[Task, int]], tasks_dir: str) -> BenchReport:
    """A scikit-learn baseline on the jobs' tasks it applies to, as a run of model ``sklearn``."""
    from graph.baselines import applies, run_baseline

    by_task: dict[str, tuple[Task, list[int]]] = {}
    for task, index in jobs:
        if applies(name, task):
            by_task.setdefault(task.id, (task, []))[1].append(index)
    results: dict[str, list[QueryResult]] = defaultdict(list)
    for task, indices in by_task.values():
        results[task.type or "untyped"] += run_baseline(name, task, indices)
    return _report("sklearn", name, name, tasks_dir, results, [t for t, _ in by_task.values()])


def _report(
    model: str,
    strategy: str,
    variant: str,
    tasks_dir: str,
    results: dict[str, list[QueryResult]],
    tasks: list[Task],
    calibration_threshold: float | None = None,
    **extra: Any,
) -> BenchReport:
    """Rows per type and overall (with GPT-4 and regression metrics where they apply), and the
    calibration at the router's threshold when one is given."""
    means = regression_means(tasks)
    rows = [summarize(k, results[k], GPT4_1DARC.get(k), regression_means=means) for k in sorted(results)]
    everything = [r for k in sorted(results) for r in results[k]]
    gpt4_known = [row.gpt4 for row in rows if row.gpt4 is not None]
    overall = summarize(
        "overall",
        everything,
        sum(gpt4_known) / len(gpt4_known) if len(gpt4_known) == len(rows) else None,
        regression_means=means,
    )
    return BenchReport(
        model=model,
        strategy=strategy,
        variant=variant,
        tasks_dir=tasks_dir,
        rows=rows,
        overall=overall,
        results=everything,
        calibration=None if calibration_threshold is None else calibration(everything, calibration_threshold),
        **extra,
    )


def _point(label: str, row: TypeRow) -> Point:
    return Point(
        label=label,
        accuracy=row.accuracy,
        ci_low=row.ci_low,
        ci_high=row.ci_high,
        seconds_per_query=row.seconds_per_query,
        tokens_per_query=row.tokens_per_query,
    )


def compare_strategies(
    reports: list[BenchReport], *, every_run: bool = False
) -> tuple[dict[str, dict[str, Point]], dict[str, RouterStanding]]:
    """Per model: each run's overall point, the oracle over its fixed strategies, the router's standing.

    The oracle needs at least one fixed strategy (of :data:`ALL_FIXED`) and the standing also needs
    an ``auto`` run; models with a single run get no entry (nothing to compare) unless ``every_run``
    (baselines are there to compare with).
    """
    points: dict[str, dict[str, Point]] = {}
    standings: dict[str, RouterStanding] = {}
    for model_name in dict.fromkeys(r.model for r in reports):
        mine = [r for r in reports if r.model == model_name]
        if len(mine) < 2 and not every_run:
            continue
        pts = {r.variant or r.strategy: _point(r.variant or r.strategy, r.overall) for r in mine}
        fixed = {r.variant: r.results for r in mine if r.variant in ALL_FIXED}
        if fixed:
            pts["oracle"] = oracle(fixed)
        points[model_name] = pts
        if "auto" in pts and fixed:
            standings[model_name] = standing(
                {k: p for k, p in pts.items() if k in fixed}, pts["auto"], pts["oracle"]
            )
    return points, standings


def strategy_table(points: dict[str, dict[str, Point]], reports: list[BenchReport]) -> Table:
    """Every strategy of every model, overall: accuracy [CI], seconds and tokens per query, DG-DIFF."""
    dg = {(r.model, r.variant or r.strategy): r for r in reports}
    table = Table(title="strategies compared (same queries; oracle = best fixed strategy in hindsight)")
    for col in ["model", "strategy", "exact match", "95% CI", "s/query", "tokens/query", "DG-DIFF"]:
        table.add_column(col, justify="left" if col in ("model", "strategy") else "right")
    for model_name, pts in points.items():
        for label, p in pts.items():
            rep = dg.get((model_name, label))
            table.add_row(
                model_name,
                label,
                f"{p.accuracy:.1%}",
                f"{p.ci_low:.0%}–{p.ci_high:.0%}",
                f"{p.seconds_per_query:.2f}",
                f"{p.tokens_per_query:.0f}",
                "" if rep is None or rep.dg_diff is None else f"{rep.dg_diff:+.3f} (n={rep.dg_tasks})",
                style="dim" if label == "oracle" else ("bold" if label == "auto" else None),
            )
    return table


def standing_line(model_name: str, st: RouterStanding) -> str:
    """One line: the router against the best fixed strategy and the oracle, and the target."""
    verdict = "[green]meets[/green]" if st.meets_target else "[red]misses[/red]"
    return (
        f"router ({model_name}): {st.router_accuracy:.1%} vs best fixed {st.best_fixed} "
        f"{st.best_accuracy:.1%} ({100 * st.accuracy_gap:+.1f} pts) at {st.compute_ratio:.0%} of its "
        f"compute; {st.share_of_oracle:.0%} of the oracle ({st.oracle_accuracy:.1%}); {verdict} the "
        "target (within 2 pts at <= 40 % compute)"
    )


def bench_one(
    model: ModelBackend, ctx: Context, jobs: list[tuple[Task, int]], tasks_dir: str, *, variant: str = ""
) -> BenchReport:
    """Run every job through a graph bound to ``model``; summarise per type and overall."""
    from langgraph.store.memory import InMemoryStore
    from rich.console import Console
    from rich.progress import Progress

    from graph.builder import build_graph
    from graph.runner import run_query

    # No checkpointer: a benchmark is not resumed; an in-memory store keeps per-task evidence.
    store = InMemoryStore()
    graph = build_graph(model=model, store=store)
    answered: list[QueryResult] = []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task(f"{model.name} · {variant or ctx.strategy}", total=len(jobs))
        for task, index in jobs:
            answered.append(run_query(graph, task, index, context=ctx))
            progress.advance(bar)
    return make_report(model, ctx, jobs, tasks_dir, answered, store, variant=variant)


def make_report(
    model: ModelBackend,
    ctx: Context,
    jobs: list[tuple[Task, int]],
    tasks_dir: str,
    answered: list[QueryResult],
    store: Any,
    *,
    variant: str = "",
) -> BenchReport:
    """Summarise ``answered`` (one result per job, in job order) per type and overall."""
    from graph.memory import task_evidence

    results: dict[str, list[QueryResult]] = defaultdict(list)
    for (task, _), result in zip(jobs, answered, strict=True):
        results[task.type or "untyped"].append(result)
    measured = [
        float(ev["dg_diff"])
        for key in dict.fromkeys(t.key for t, _ in jobs)
        if "dg_diff" in (ev := task_evidence(store, key))
    ]
    return _report(
        model.name,
        ctx.strategy,
        variant or ctx.strategy,
        tasks_dir,
        results,
        list({t.id: t for t, _ in jobs}.values()),
        dg_diff=round(sum(measured) / len(measured), 4) if measured else None,
        dg_tasks=len(measured),
        calibration_threshold=ctx.confidence_threshold,
    )


def bench_workers(
    model: ModelBackend,
    ctx: Context,
    jobs: list[tuple[Task, int]],
    tasks_dir: str,
    base: Database | None,
    workers: int,
    *,
    variant: str = "",
) -> tuple[BenchReport, Throughput]:
    """Run every job in ``workers`` processes on a scratch database of ``base``'s backend."""
    from rich.console import Console
    from rich.progress import Progress

    from graph.workers import run_parallel, scratch_database

    with scratch_database(base) as db, Progress(console=Console(stderr=True), transient=True) as progress:
        what = f"{model.name} · {variant or ctx.strategy} · {workers} workers"
        bar = progress.add_task(what, total=len(jobs))
        results, row = run_parallel(
            ctx, jobs, db, workers, model_name=model.name, on_result=lambda: progress.advance(bar)
        )
        report = make_report(model, ctx, jobs, tasks_dir, results, open_store(db), variant=variant)
    return report, row


def throughput_table(rows: list[dict[str, Any]]) -> Table:
    """``--workers``: queries per second per worker count, speed-up over the first, lost updates."""
    table = Table(title="workers sharing one database (model loading not counted)")
    columns = ["model", "strategy", "workers", "queries", "wall s", "queries/s", "speed-up", "CPU s", "lost"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "strategy") else "right")
    first: dict[tuple[str, str], float] = {}
    for r in rows:
        base = first.setdefault((r["model"], r["variant"]), r["queries_per_s"])
        table.add_row(
            r["model"],
            r["variant"],
            str(r["workers"]),
            str(r["queries"]),
            f"{r['wall_s']:.1f}",
            f"{r['queries_per_s']:.2f}",
            f"{r['queries_per_s'] / base:.2f}x" if base else "",
            f"{r['cpu_s']:.1f}",
            f"{r['lost']} of {r['evidence_expected']}",
            style="red" if r["lost"] else None,
        )
    return table


def calibration_table(reports: list[BenchReport]) -> Table:
    """Per run: how often an answer at or above the router's threshold was wrong."""
    table = Table(title="calibration: answers at or above the confidence threshold that were wrong")
    for col in ["model", "strategy", "threshold", "sure", "sure & wrong", "wrong rate", "wrong >= 0.9",
                "conf right", "conf wrong"]:  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "strategy") else "right")
    for r in reports:
        c = r.calibration
        if c is None:
            continue
        table.add_row(
            r.model,
            r.variant or r.strategy,
            f"{c.threshold:.2f}",
            f"{c.confident}/{c.queries}",
            str(c.confident_wrong),
            "" if c.wrong_rate is None else f"{c.wrong_rate:.0%}",
            str(c.very_sure_wrong),
            "" if c.mean_conf_correct is None else f"{c.mean_conf_correct:.2f}",
            "" if c.mean_conf_wrong is None else f"{c.mean_conf_wrong:.2f}",
        )
    return table


def detail_table(report: BenchReport) -> Table:
    """Per type: accuracy with its interval, cost per query, GPT-4's score."""
    table = Table(title=f"{report.model} · strategy {report.variant or report.strategy} · {report.tasks_dir}")
    regression = any(row.mae is not None for row in report.rows)
    columns = ["type", "n", "accuracy" if regression else "exact match", "95% CI", "s/query", "tokens/query"]
    columns += ["MAE", "R²"] if regression else []
    for col in [*columns, "GPT-4"]:
        table.add_column(col, justify="left" if col == "type" else "right")
    for row in [*report.rows, report.overall]:
        table.add_row(
            row.type,
            str(row.queries),
            f"{row.accuracy:.1%}",
            f"{row.ci_low:.0%}–{row.ci_high:.0%}",
            f"{row.seconds_per_query:.3f}"
            if row.seconds_per_query < 0.01
            else f"{row.seconds_per_query:.2f}",
            f"{row.tokens_per_query:.0f}",
            *(_regression_cells(row) if regression else []),
            "" if row.gpt4 is None else f"{row.gpt4:.1f}%",
            style="bold" if row.type == "overall" else None,
        )
    return table


def _regression_cells(row: TypeRow) -> list[str]:
    if row.mae is None or row.r2 is None:
        return ["", ""]
    return [f"{row.mae:.4g}", f"{row.r2:.3f}"]


def comparison_table(reports: list[BenchReport]) -> Table:
    """Runs side by side (the ablation view): accuracy [95 % CI] and seconds per query, per type."""
    table = Table(title="side by side: accuracy [95% CI] · seconds per query (· MAE for regression)")
    table.add_column("type")
    for report in reports:
        table.add_column(f"{report.model} · {report.variant or report.strategy}", justify="right")
    table.add_column("GPT-4", justify="right")
    names = list(dict.fromkeys(row.type for report in reports for row in report.rows))
    for name in [*names, "overall"]:
        cells = []
        row = reports[0].overall
        for report in reports:
            found = next((x for x in [*report.rows, report.overall] if x.type == name), None)
            if found is None:
                cells.append("—")  # e.g. a classifier baseline on a regression table
                continue
            row = found
            mae = "" if found.mae is None else f" · MAE {found.mae:.4g}"
            cells.append(
                f"{found.accuracy:.0%} [{found.ci_low:.0%}, {found.ci_high:.0%}] · "
                f"{found.seconds_per_query:.{3 if found.seconds_per_query < 0.05 else 1}f}s{mae}"
            )
        table.add_row(
            name,
            *cells,
            "" if row.gpt4 is None else f"{row.gpt4:.1f}%",
            style="bold" if row.type == "overall" else None,
        )
    return table


def vs_icl(reports: list[BenchReport]) -> list[dict[str, Any]]:
    """Each run's overall accuracy and seconds per query over its model's ``icl`` run (same queries).

    A ratio is ``None`` where the ICL figure is 0 (no ratio exists); runs of a model without an
    ``icl`` run are left out.
    """
    icl = {r.model: r.overall for r in reports if (r.variant or r.strategy) == "icl"}
    out = []
    for r in reports:
        base = icl.get(r.model)
        if base is None or (r.variant or r.strategy) == "icl":
            continue
        out.append(
            {
                "model": r.model,
                "variant": r.variant or r.strategy,
                "accuracy": r.overall.accuracy,
                "icl_accuracy": base.accuracy,
                "accuracy_points": round(100 * (r.overall.accuracy - base.accuracy), 2),
                "accuracy_ratio": round(r.overall.accuracy / base.accuracy, 3) if base.accuracy else None,
                "seconds_ratio": (
                    round(r.overall.seconds_per_query / base.seconds_per_query, 2)
                    if base.seconds_per_query
                    else None
                ),
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
