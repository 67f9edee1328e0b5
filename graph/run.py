"""``python -m graph.run``: answer queries with a live trace.

Examples::

    python -m graph.run                                  # bundled examples, embedded model
    python -m graph.run --task ../shared/benchmarks/1d-arc/1d_fill/1d_fill_0.json
    python -m graph.run --task tasks/examples/reverse.json --query '[[0,1,2,0]]'
    python -m graph.run --model openai:gpt-4o-mini --task my_task.json --json
    python -m graph.run --task t.json --thread demo      # resumable: run again to resume
    python -m graph.run --task t.json --strategy expert  # ask a person (inline, at the terminal)
    python -m graph.run --task t.json --expert-review --no-wait   # leave reviews for graph.review

Every flag also comes from the environment / ``.env`` (``MOCKINGBIRD_*``, see ``.env.example``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graph.cli_common import (
    add_context_flags,
    add_table_flags,
    cli_main,
    context_from_args,
    parse_json_flag,
    task_split,
)
from graph.errors import SettingsError
from graph.settings import EXAMPLES_DIR, database

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from graph.runner import QueryResult
    from tasks.schema import Task


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m graph.run",
        description="Answer machine-learning queries with a language model, routed per query.",
    )
    parser.add_argument(
        "--task",
        help="task file or folder (ARC/1D-ARC, BBH, CSV/JSONL/Parquet tables, task JSON); "
        "default: the bundled examples",
    )
    parser.add_argument("--query", help="a query input as JSON (instead of the task's test queries)")
    parser.add_argument("--target", help="the expected output for --query, as JSON (for scoring)")
    parser.add_argument(
        "--k-shot", type=int, default=3, help="demonstrations taken from BBH files and tables (default 3)"
    )
    parser.add_argument("--thread", help="thread id: checkpointed, resumable by running again with it")
    parser.add_argument("--limit", type=int, help="answer at most this many queries")
    parser.add_argument("--json", action="store_true", help="print machine-readable results on stdout")
    parser.add_argument("--quiet", action="store_true", help="no live trace, only the summary")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        dest="no_wait",
        help="when a run asks for an expert, leave it waiting (answer later with graph.review) "
        "instead of asking here; the default without a terminal",
    )
    parser.add_argument("--expert", help="your name, recorded with answers given here (default: login name)")
    add_table_flags(parser)
    add_context_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return cli_main(build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    # Imports here keep `--help` and argument errors fast (torch/transformers load with the model).
    from rich.text import Text

    from graph.builder import build_graph
    from graph.context import resolve_model
    from graph.review import login_name
    from graph.router import check_strategy
    from graph.runner import check_thread_owner, run_query
    from graph.storage import open_checkpointer, open_store
    from graph.trace import TraceView
    from tasks.loaders import load_any
    from tasks.schema import check_query

    if args.limit is not None and args.limit < 1:
        raise SettingsError(f"--limit: must be at least 1, got {args.limit}")
    ctx = context_from_args(args)
    query = parse_json_flag(args.query, "--query")
    target = parse_json_flag(args.target, "--target")
    tasks = load_any(Path(args.task) if args.task else EXAMPLES_DIR, task_split(args, seed=ctx.seed))
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
    db = database(args.db)  # before the model: a wrong database fails in a second, not after a load
    checkpointer, store = open_checkpointer(db), open_store(db)
    model = resolve_model(ctx, None)
    check_strategy(ctx.strategy, can_adapt=model.capabilities.adapt, model=model.name)
    graph = build_graph(model=model, checkpointer=checkpointer, store=store)
    run_id = args.thread or uuid.uuid4().hex[:8]

    def thread_of(task: Task, index: int) -> str:
        return run_id if (args.thread and len(jobs) == 1) else f"{run_id}:{task.id}:{index}"

    if args.thread:  # a thread belongs to one task and query: refuse a mismatch before anything runs
        for task, index in jobs:
            tid = thread_of(task, index)
            values = graph.get_state({"configurable": {"thread_id": tid}}).values
            check_thread_owner(tid, values, task, query if query is not None else task.test[index].input)
    view.console.print(
        f"[dim]model {model.name} · strategy {ctx.strategy} · {len(jobs)} queries · "
        f"thread {run_id} · db {db}[/]"
    )
    results = []
    for task, index in jobs:
        # one query on its own thread; the same call resumes it with an expert's reply
        answer = partial(
            run_query,
            graph,
            task,
            index,
            context=ctx,
            query_input=query,
            target=target if query is not None else None,
            thread_id=thread_of(task, index),
        )
        if not args.quiet:
            view.header(f"{task.id} · query {index}")
        result = answer(on_event=None if args.quiet else view.event)
        if result.status == "waiting" and not args.no_wait and sys.stdin.isatty():
            events = None if args.quiet else TraceView(view.console).event
            expert = (args.expert or login_name()).strip() or "anonymous"
            result = _ask_inline(task, index, result, view.console, expert, partial(_resume, answer, events))
        if not args.quiet and result.status == "done":
            view.answer(result, task.kind)
        results.append(result)
    view.summary(results)
    waiting = [r for r in results if r.status == "waiting"]
    for r in waiting:
        command = (
            f"python -m graph.review --db {shlex.quote(db.cli_arg)} --thread {shlex.quote(r.thread_id or '')}"
        )
        view.console.print(
            Text.assemble(  # Text, not markup: a path or thread id may hold '[' characters
                (f"⏸ {r.task_id} query {r.query_index} waits for an expert", "yellow"),
                f" (thread {r.thread_id}); review with: {command}",
            ),
            soft_wrap=True,  # one line however narrow the terminal: the command is copied as is
        )
    if args.json:
        json.dump([r.model_dump(mode="json") for r in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


def _resume(answer: Callable[..., QueryResult], on_event: Any, reply: dict[str, Any]) -> QueryResult:
    """Give the expert's reply to the waiting run and run it on (``answer``: its bound ``run_query``)."""
    return answer(on_event=on_event, resume=reply)


def _ask_inline(
    task: Task,
    index: int,
    result: QueryResult,
    console: Console,
    expert: str,
    resume_with: Callable[[dict[str, Any]], QueryResult],
) -> QueryResult:
    """The run waits for an expert and a person is at the terminal: ask, then resume the run."""
    from datetime import UTC, datetime

    from graph.review import ask_expert, query_panel, show_result, task_panel
    from graph.reviewer import WaitingRun

    while result.status == "waiting" and result.review is not None:
        run = WaitingRun(
            thread=result.thread_id or "",
            task_id=task.id,
            task_kind=task.kind,
            query=result.review.get("query"),
            query_index=index,
            since=datetime.now(UTC).isoformat(),
            review=result.review,
        )
        console.print(task_panel(run.review), query_panel(run))
        reply = ask_expert(console, run, expert)
        if not isinstance(reply, dict):
            return result  # skip / quit: the run keeps waiting in the checkpointer
        result = resume_with(reply)
        show_result(console, result, task.kind)
    return result


if __name__ == "__main__":
    sys.exit(main())
