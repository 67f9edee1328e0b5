"""The rich trace: progress bars, grids and the summary table."""

from __future__ import annotations

from rich.console import Console

from graph.runner import QueryResult
from graph.trace import TraceView, render_value


def _view() -> tuple[TraceView, Console]:
    console = Console(record=True, width=120, color_system=None)
    return TraceView(console), console


def _result(**fields: object) -> QueryResult:
    base: dict[str, object] = {
        "task_id": "t", "query_index": 0, "strategy": "icl", "answer": [[1]], "confidence": 0.5,
        "seconds": 0.1, "tokens": 10,
    }  # fmt: skip
    return QueryResult.model_validate(base | fields)


def test_training_progress_is_drawn_at_each_quarter_only():
    view, console = _view()
    for step in range(1, 41):
        view.event({"node": "ttt", "step": step, "steps": 40, "loss": 1.0 / step, "kind": "progress"})
    text = console.export_text()
    assert text.count("training adapter") == 5  # steps 1, 10, 20, 30, 40
    assert "40/40  loss 0.025" in text


def test_the_summary_marks_a_run_waiting_for_an_expert():
    view, console = _view()
    view.summary(
        [
            _result(correct=True, target=[[1]]),
            _result(query_index=1, status="waiting", correct=None, thread_id="abc"),
        ]
    )
    text = console.export_text()
    assert "waiting" in text and "correct" in text and "abc" in text
    assert "exact match 1/1" in text


def test_grids_render_as_cells_and_missing_answers_say_so():
    assert render_value([[1, 2], [3, 4]], "grid").plain == "12\n34"
    assert render_value(None, "grid").plain == "(no answer)"
    assert render_value("x" * 200, "text", max_chars=10).plain == "x" * 9 + "…"
