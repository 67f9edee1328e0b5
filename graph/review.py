"""``python -m graph.review``: answer the runs that wait for a human expert.

A run pauses in the ``expert`` node (``nodes/expert.py``) with LangGraph ``interrupt()``; its
state waits in the checkpointer (SQLite or PostgreSQL, ``--db``) until someone answers. This
module finds those runs, shows each one (rich panels, grids in the ARC colours), takes the
expert's reply and resumes the run on its own thread with ``Command(resume=reply)``.

Examples::

    python -m graph.review --list                      # what waits: thread, task, query, age
    python -m graph.review                             # go through them one by one
    python -m graph.review --task reverse --batch      # all waiting queries of a task in one sitting
    python -m graph.review --thread 3f2a9c1e:reverse:0 --expert ada
    python -m graph.review --web                       # the same in a local web page

At the prompt: ``accept N`` (candidate N is right), ``answer JSON`` (the correct output),
``note TEXT`` (a rule or hint: kept with the task, and the query is predicted again with it),
``skip`` or ``quit``.

Resuming needs the graph and the run's knobs: the graph is rebuilt here (same nodes, same
database), and the run's :class:`~graph.context.Context` comes from the record ``run_query`` kept in
the store when the run started (LangGraph does not persist the runtime context). ``--model``
overrides the model, which only a ``note`` needs (it predicts again).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from graph.cli_common import cli_main
from graph.errors import InvalidInputError, SettingsError
from graph.reviewer import Reviewer, WaitingRun, age_text
from graph.settings import database
from models.base import ModelError

if TYPE_CHECKING:
    from graph.runner import QueryResult

log = logging.getLogger(__name__)

PROMPT_HELP = "accept N · answer JSON · note TEXT · skip · quit"


# --- terminal rendering ---------------------------------------------------------------------


def waiting_table(runs: list[WaitingRun]) -> Table:
    """The ``--list`` table."""
    from graph.trace import render_value

    table = Table(title=f"{len(runs)} run(s) waiting for an expert")
    for col in ("thread", "task", "query", "candidates", "age"):
        table.add_column(col)
    for run in runs:
        table.add_row(
            run.thread,
            run.task_id,
            render_value(run.query, run.task_kind, max_chars=40),
            str(len(run.review.get("candidates", []))),
            age_text(run.age_s),
        )
    return table


def task_panel(review: dict[str, Any]) -> Panel:
    """The task a review is about: function, notes and demonstrations."""
    from graph.trace import render_value

    kind = str(review.get("task_kind"))
    fn = review.get("function") or {}
    parts: list[Any] = [Text.assemble((str(fn.get("signature") or fn.get("name", "")), "bold"))]
    if fn.get("docstring"):
        parts.append(Text(str(fn["docstring"]), style="italic"))
    if review.get("notes"):
        parts.append(Text("notes: " + " · ".join(map(str, review["notes"])), style="yellow"))
    demos = Table(title="demonstrations", show_header=True, box=None, padding=(0, 2))
    demos.add_column("#", style="dim")
    demos.add_column("input")
    demos.add_column("output")
    for i, demo in enumerate(review.get("demos", [])):
        demos.add_row(str(i), render_value(demo.get("input"), kind), render_value(demo.get("output"), kind))
    parts.append(demos)
    return Panel(Group(*parts), title=f"task {review.get('task_id')} ({kind})", border_style="cyan")


def query_panel(run: WaitingRun) -> Panel:
    """What the expert answers: the query, the model's candidates and the router's reasons."""
    from graph.trace import render_value

    review, kind = run.review, run.task_kind
    parts: list[Any] = [Text.assemble(("query  ", "bold"), render_value(run.query, kind))]
    cands = Table(title="candidates", box=None, padding=(0, 2))
    cands.add_column("#", style="bold")
    cands.add_column("answer")
    cands.add_column("votes", justify="right")
    cands.add_column("share", justify="right")
    for i, c in enumerate(review.get("candidates", [])):
        share = f"{c.get('share', 0):.2f}"
        cands.add_row(str(i), render_value(c.get("answer"), kind), str(c.get("votes")), share)
    parts.append(cands if review.get("candidates") else Text("no candidates", style="dim"))
    for a in review.get("attempts", []):
        parts.append(Text(f"tried {a['strategy']}: confidence {a['confidence']:.2f}", style="dim"))
    for reason in review.get("reasons", []):
        parts.append(Text(f"router: {reason}", style="magenta"))
    return Panel(
        Group(*parts),
        title=f"thread {run.thread} · task {run.task_id} · waiting {age_text(run.age_s)}",
        border_style="yellow",
    )


def parse_command(line: str, *, expert: str, task_kind: str) -> dict[str, Any] | str:
    """A prompt line as a reply dict, or ``"skip"`` / ``"quit"``.

    Raises:
        InvalidInputError: One line saying what is wrong and what is expected.
    """
    word, _, rest = line.strip().partition(" ")
    word, rest = word.lower(), rest.strip()
    if word in ("s", "skip"):
        return "skip"
    if word in ("q", "quit", "exit"):
        return "quit"
    if word in ("a", "accept"):
        if not rest.isdigit():
            raise InvalidInputError(f"accept: give the candidate's number, e.g. 'accept 0' (got {rest!r})")
        return {"action": "accept", "candidate": int(rest), "expert": expert}
    if word in ("answer", "ans"):
        if not rest:
            raise InvalidInputError("answer: give the correct output as JSON, e.g. 'answer [[1, 2]]'")
        try:
            value = json.loads(rest)
        except json.JSONDecodeError as exc:
            if task_kind != "text":
                raise InvalidInputError(f"answer: not valid JSON ({exc.msg} at column {exc.colno})") from None
            value = rest  # a text task's answer may be typed without quotes
        return {"action": "answer", "answer": value, "expert": expert}
    if word in ("n", "note"):
        if not rest:
            raise InvalidInputError("note: give the rule or hint, e.g. 'note mirror the row'")
        return {"action": "note", "note": rest, "expert": expert}
    raise InvalidInputError(f"unknown reply {word!r}; expected {PROMPT_HELP}")


def ask_expert(console: Console, run: WaitingRun, expert: str) -> dict[str, Any] | str:
    """Ask at the terminal until the reply is valid for this review (or skip / quit)."""
    from rich.prompt import Prompt

    from graph.expert_reply import parse_reply

    while True:
        try:
            line = Prompt.ask(f"[bold]reply[/] [dim]({PROMPT_HELP})[/]", console=console)
        except EOFError:
            return "quit"
        try:
            reply = parse_command(line, expert=expert, task_kind=run.task_kind)
            if isinstance(reply, dict):
                parse_reply(reply, run.review)  # the same check the node makes, before resuming
            return reply
        except InvalidInputError as exc:
            console.print(Text(f"✘ {exc}", style="red"))  # Text: a message's [[1]] is not markup


def show_result(console: Console, result: QueryResult, kind: str) -> None:
    """One line after a resume: what the run answered."""
    from graph.trace import render_value

    verdict = {True: ("correct", "green"), False: ("wrong", "red"), None: ("no target", "dim")}[
        result.correct
    ]
    line = Text.assemble(("✔ ", "green"), f"thread {result.thread_id}: {result.status}, answer ")
    line.append_text(render_value(result.answer, kind))
    line.append_text(Text.assemble(" (", verdict, f", confidence {result.confidence:.2f})"))
    console.print(line)


def review_session(
    reviewer: Reviewer, console: Console, runs: list[WaitingRun], *, expert: str, batch: bool = False
) -> dict[str, int]:
    """Go through ``runs`` at the terminal; returns how many were answered / skipped."""
    counts = {"answered": 0, "skipped": 0}
    if batch and runs:
        console.print(task_panel(runs[0].review))  # the task once; then each of its queries
    for n, run in enumerate(runs, 1):
        console.rule(f"[bold]{n}/{len(runs)}")
        if not batch:
            console.print(task_panel(run.review))
        console.print(query_panel(run))
        reply = ask_expert(console, run, expert)
        if reply == "quit":
            break
        if reply == "skip" or not isinstance(reply, dict):
            counts["skipped"] += 1
            continue
        try:
            result = reviewer.resume(run.thread, reply)
        except InvalidInputError as exc:  # e.g. answered meanwhile from another terminal or the page
            console.print(Text(f"✘ {exc}", style="red"))
            counts["skipped"] += 1
            continue
        except ModelError as exc:  # re-predicting after a note failed: the run keeps waiting
            console.print(Text(f"✘ model call failed: {exc}; the run still waits", style="red"))
            counts["skipped"] += 1
            continue
        show_result(console, result, run.task_kind)
        counts["answered"] += 1
    console.print(
        f"[bold]{counts['answered']} answered[/], {counts['skipped']} skipped, "
        f"{len(runs) - counts['answered'] - counts['skipped']} left"
    )
    return counts


# --- the CLI --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m graph.review", description="Answer the runs that wait for a human expert."
    )
    parser.add_argument(
        "--db", help="database of the runs: a SQLite path or postgresql://... (default as graph.run)"
    )
    parser.add_argument("--task", help="only runs of this task id")
    parser.add_argument("--thread", help="only this run")
    parser.add_argument("--batch", action="store_true", help="all waiting runs of one task in one sitting")
    parser.add_argument("--expert", help="your name, recorded with each answer (default: login name)")
    parser.add_argument("--list", action="store_true", help="list the waiting runs and exit")
    parser.add_argument("--model", help="model for re-predicting after a note (default: the run's own)")
    parser.add_argument("--web", action="store_true", help="serve the review page instead")
    parser.add_argument("--host", default="127.0.0.1", help="--web: address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="--web: port (default 8765; 0 = any free)")
    parser.add_argument(
        "--token-file",
        help="--web: file holding the access token (optional on 127.0.0.1, required when bound "
        "elsewhere); also MOCKINGBIRD_REVIEW_TOKEN_FILE, or the token itself in MOCKINGBIRD_REVIEW_TOKEN",
    )
    parser.add_argument(
        "--token",
        help="--web: the access token itself (discouraged: other users see it in `ps`; prefer "
        "--token-file or MOCKINGBIRD_REVIEW_TOKEN)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return cli_main(build_parser(), _run, argv)


def review_token(token_file: str | None, token: str | None) -> str | None:
    """The review page's token: ``--token-file`` > ``--token`` > ``MOCKINGBIRD_REVIEW_TOKEN_FILE`` >
    ``MOCKINGBIRD_REVIEW_TOKEN`` (``None``: no token). A file or the environment keeps it out of
    ``ps``, which shows every process's command line to every user of the machine.

    Raises:
        SettingsError: The file cannot be read or is empty.
    """
    import os

    from graph.settings import ProcessSettings

    if token is not None and token_file is None:
        log.warning("--token is visible to other users in `ps`; use --token-file or MOCKINGBIRD_REVIEW_TOKEN")
        return token
    path, flag = (token_file, "--token-file") if token_file else (
        ProcessSettings().review_token_file or None, "MOCKINGBIRD_REVIEW_TOKEN_FILE")  # fmt: skip
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"{flag}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        if not text:
            raise SettingsError(f"{flag}: {path} is empty")
        return text
    return os.environ.get("MOCKINGBIRD_REVIEW_TOKEN") or None


def _run(args: argparse.Namespace) -> int:
    expert = (args.expert or login_name()).strip()
    if not expert:
        raise SettingsError("--expert: must not be empty")
    if args.batch and not args.task:
        raise SettingsError("--batch: give --task ID, the task whose waiting runs to review in one sitting")
    db = database(args.db)
    if not db.exists():
        raise SettingsError(f"{db}: no such database (run graph.run first, or give --db)")
    reviewer = Reviewer(db, model_spec=args.model)
    console = Console()  # an interactive program: panels and prompts on the terminal's stdout
    if args.web:
        from graph.review_web import serve

        token = review_token(args.token_file, args.token)
        serve(reviewer, host=args.host, port=args.port, token=token, expert=expert, console=console)
        return 0
    runs = reviewer.waiting(task_id=args.task, thread=args.thread)
    if args.thread and not runs:
        raise SettingsError(f"--thread: {args.thread} is not waiting for an expert in {db}")
    if args.list or not runs:
        console.print(waiting_table(runs))
        return 0
    review_session(reviewer, console, runs, expert=expert, batch=args.batch)
    return 0


def login_name() -> str:
    """Who is at the keyboard, for the expert field (``anonymous`` when there is no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (containers without a passwd entry)
        return "anonymous"


if __name__ == "__main__":
    sys.exit(main())
