"""Rich rendering of the trace: node events as they happen, answers, and a summary table."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from graph.runner import QueryResult

#: The ARC palette, so grids look the way ARC users know them.
ARC_COLOURS = [
    "#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
    "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25",
]  # fmt: skip

NODE_STYLE = {
    "prepare": "cyan",
    "route": "magenta",
    "icl": "green",
    "select": "bright_green",
    "reflect": "bright_cyan",
    "ttt": "bright_magenta",
    "expert": "bold yellow",
    "finalize": "blue",
    "checkpoint": "yellow",
}


def render_value(value: Any, kind: str, *, max_chars: int = 120) -> Text:
    """A value for the terminal: grids as coloured cells, others as compact JSON."""
    if value is None:
        return Text("(no answer)", style="dim italic")
    if kind == "grid" and isinstance(value, list) and all(isinstance(r, list) for r in value):
        out = Text()
        for r, row in enumerate(value):
            if r:
                out.append("\n")
            for cell in row:
                colour = ARC_COLOURS[cell] if isinstance(cell, int) and 0 <= cell <= 9 else "#ffffff"
                out.append(
                    f"{cell}", style=f"bold {'#ffffff' if cell in (0, 1, 9) else '#000000'} on {colour}"
                )
        return out
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return Text(text if len(text) <= max_chars else text[: max_chars - 1] + "…")


class TraceView:
    """Prints trace events to a console (stderr by default, so ``--json`` stdout stays clean)."""

    def __init__(self, console: Console | None = None, *, verbose: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.verbose = verbose

    def header(self, text: str) -> None:
        self.console.rule(f"[bold]{text}")

    def event(self, event: dict[str, Any]) -> None:
        """One node event (updates always; progress lines only when verbose)."""
        if event.get("kind") == "progress" and not self.verbose:
            return
        message = str(event.get("message", ""))
        if "step" in event and "steps" in event:  # training progress: a bar at each quarter
            step, steps = int(event["step"]), int(event["steps"])
            if step not in (1, steps) and step % max(1, steps // 4):
                return
            filled = round(20 * step / steps)
            bar = "█" * filled + "░" * (20 - filled)
            message = f"training adapter ▕{bar}▏ {step}/{steps}  loss {event['loss']:.3f}"
        node = str(event.get("node", "?"))
        style = NODE_STYLE.get(node, "white")
        line = Text.assemble(
            ("  ▸ " if event.get("kind") == "progress" else "  ● ", style), (f"{node:<10} ", style)
        )
        line.append(message)
        if event.get("seconds"):
            line.append(f"  {event['seconds']:.2f} s", style="dim")
        if event.get("tokens"):
            line.append(f"  {event['tokens']} tok", style="dim")
        self.console.print(line)

    def answer(self, result: QueryResult, kind: str) -> None:
        """The answer beside the target, with the verdict."""
        verdict = {
            True: ("✔ correct", "bold green"),
            False: ("✘ wrong", "bold red"),
            None: ("no target", "dim"),
        }
        label, style = verdict[result.correct]
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim")
        grid.add_column()
        grid.add_row("answer", render_value(result.answer, kind))
        if result.target is not None:
            grid.add_row("target", render_value(result.target, kind))
        grid.add_row(
            "result",
            Text.assemble(
                (label, style),
                f"  confidence {result.confidence:.2f}  ",
                (f"{result.seconds:.2f} s, {result.tokens} tokens", "dim"),
            ),
        )
        self.console.print(grid)

    def summary(self, results: list[QueryResult]) -> None:
        """A table of every query and the totals."""
        table = Table(title="Summary", show_lines=False)
        for col, justify in [
            ("task", "left"),
            ("q", "right"),
            ("strategy", "left"),
            ("result", "left"),
            ("conf.", "right"),
            ("s", "right"),
            ("tokens", "right"),
            ("thread", "left"),
        ]:
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for r in results:
            mark = {True: "[green]correct[/]", False: "[red]wrong[/]", None: "[dim]—[/]"}[r.correct]
            if r.status == "waiting":  # paused for an expert: no answer yet
                mark = "[yellow]waiting[/]"
            table.add_row(
                r.task_id,
                str(r.query_index),
                r.strategy,
                mark,
                f"{r.confidence:.2f}",
                f"{r.seconds:.2f}",
                str(r.tokens),
                r.thread_id or "",
            )
        scored = [r for r in results if r.correct is not None]
        if scored:
            hits = sum(1 for r in scored if r.correct)
            table.caption = (
                f"exact match {hits}/{len(scored)} ({hits / len(scored):.0%}); "
                f"{sum(r.seconds for r in results):.1f} s, {sum(r.tokens for r in results)} tokens"
            )
        self.console.print(table)
