"""``python -m graph.run``: answer queries with a live trace.

Examples::

    python -m graph.run                                  # bundled examples, embedded model
    python -m graph.run --task ../shared/benchmarks/1d-arc/1d_fill/1d_fill_0.json
    python -m graph.run --task tasks/examples/reverse.json --query '[[0,1,2,0]]'
    python -m graph.run --model openai:gpt-4o-mini --task my_task.json --json
    python -m graph.run --task t.json --thread demo      # resumable: run again to resume

Every flag also comes from the environment / ``.env`` (``MOCKINGBIRD_*``, see ``.env.example``).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

from graph.cli_common import (
    add_context_flags,
    context_from_args,
    parse_json_flag,
    run_cli,
    setup_logging,
)
from graph.errors import SettingsError
from graph.settings import EXAMPLES_DIR, db_path, load_dotenv_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m graph.run",
        description="Answer machine-learning queries with a language model, routed per query.",
    )
    parser.add_argument(
        "--task",
        help="task file or folder (ARC/1D-ARC, BBH, CSV/JSONL, task JSON); default: the bundled examples",
    )
    parser.add_argument("--query", help="a query input as JSON (instead of the task's test queries)")
    parser.add_argument("--target", help="the expected output for --query, as JSON (for scoring)")
    parser.add_argument(
        "--k-shot", type=int, default=3, help="demonstrations taken from BBH/CSV files (default 3)"
    )
    parser.add_argument("--label-column", help="label column of a CSV/JSONL task")
    parser.add_argument("--thread", help="thread id: checkpointed, resumable by running again with it")
    parser.add_argument("--limit", type=int, help="answer at most this many queries")
    parser.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    parser.add_argument("--quiet", action="store_true", help="no live trace, only the summary")
    add_context_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    load_dotenv_file()
    setup_logging(args.verbose)
    return run_cli(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    # Imports here keep `--help` and argument errors fast (torch/transformers load with the model).
    from graph.builder import build_graph
    from graph.router import check_strategy
    from graph.runner import run_query
    from graph.storage import open_checkpointer, open_store
    from graph.trace import TraceView
    from nodes.common import resolve_model
    from tasks.loaders import load_any
    from tasks.schema import check_query

    if args.limit is not None and args.limit < 1:
        raise SettingsError(f"--limit: must be at least 1, got {args.limit}")
    ctx = context_from_args(args)
    query = parse_json_flag(args.query, "--query")
    target = parse_json_flag(args.target, "--target")
    tasks = load_any(
        Path(args.task) if args.task else EXAMPLES_DIR, k_shot=args.k_shot, label_column=args.label_column
    )
    jobs = [(t, i) for t in tasks for i in ([0] if query is not None else range(len(t.test)))]
    if not jobs:
        raise SettingsError(f"{args.task or EXAMPLES_DIR}: no test queries to answer (give --query)")
    jobs = jobs[: args.limit] if args.limit else jobs
    if query is not None:
        for task in {t.id: t for t, _ in jobs}.values():
            try:
                check_query(task, query, "--query")
            except ValueError as exc:
                raise SettingsError(f"{exc} (task {task.id} is of kind {task.kind})") from None

    view = TraceView(verbose=not args.quiet)
    model = resolve_model(ctx, None)
    check_strategy(ctx.strategy, can_adapt=model.capabilities.adapt, model=model.name)
    path = db_path(args.db)
    graph = build_graph(model=model, checkpointer=open_checkpointer(path), store=open_store(path))
    run_id = args.thread or uuid.uuid4().hex[:8]
    view.console.print(
        f"[dim]model {model.name} · strategy {ctx.strategy} · {len(jobs)} queries · "
        f"thread {run_id} · db {path}[/]"
    )
    results = []
    for task, index in jobs:
        thread = run_id if (args.thread and len(jobs) == 1) else f"{run_id}:{task.id}:{index}"
        if not args.quiet:
            view.header(f"{task.id} · query {index}")
        result = run_query(
            graph,
            task,
            index,
            context=ctx,
            query_input=query,
            target=target if query is not None else None,
            thread_id=thread,
            on_event=None if args.quiet else view.event,
        )
        if not args.quiet:
            view.answer(result, task.kind)
        results.append(result)
    view.summary(results)
    if args.json:
        json.dump([r.model_dump(mode="json") for r in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
