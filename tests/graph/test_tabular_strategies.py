"""Every strategy on tables: symbols decoded to the file's labels, regression scored within tolerance,
TTT over table views, the router's evidence per table, chat prompts that role-play the table."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from langgraph.store.memory import InMemoryStore

from graph.builder import build_graph
from graph.context import Context
from graph.memory import task_evidence
from graph.runner import run_query
from models.base import PromptParts
from prompts.chat import ChatRenderer
from tasks.loaders import load_tasks
from tasks.tabular import TaskSplit
from tests.graph.conftest import ScriptedBackend

TABLES = Path(__file__).resolve().parents[1] / "data" / "tables"
pytestmark = pytest.mark.usefixtures("no_cached_adapters")


def fruit(k: int = 6, queries: int = 3):
    return load_tasks(TABLES / "fruit.csv", TaskSplit(k_shot=k, seed=0, queries=queries))[0]


def rent(k: int = 8, queries: int = 3, tolerance: float | None = None):
    return load_tasks(TABLES / "rent.csv", TaskSplit(k_shot=k, seed=0, queries=queries, tolerance=tolerance))[
        0
    ]


def test_a_symbol_becomes_the_files_label_and_is_scored():
    task = fruit()
    # classes sorted: apple = A, banana = B, cherry = C
    model = ScriptedBackend(["B\n"])
    result = run_query(build_graph(model=model), task, 0, context=Context(strategy="icl", samples=1))
    assert result.answer == "banana"
    assert result.correct == (task.test[0].target == "banana")
    assert (model.prompts[0].text or "").count("\n") == 6


def test_regression_answers_are_numbers_scored_within_tolerance():
    task = rent(tolerance=100.0)  # everything within 100 label spreads counts
    model = ScriptedBackend(["5\n"])
    result = run_query(build_graph(model=model), task, 0, context=Context(strategy="icl", samples=1))
    assert isinstance(result.answer, float) and result.correct is True
    strict = rent(tolerance=0.0)
    result = run_query(build_graph(model=model), strict, 0, context=Context(strategy="icl", samples=1))
    assert result.correct is False


@pytest.mark.parametrize("strategy", ["icl", "select", "reflect", "ttt", "auto"])
def test_every_strategy_runs_on_a_table(tiny, strategy):
    task = fruit(k=4, queries=1)
    store = InMemoryStore()
    ctx = Context(strategy=strategy, samples=2, ttt_steps=2, reflect_rounds=1, confidence_threshold=1.0)
    result = run_query(build_graph(model=tiny, store=store), task, 0, context=ctx)
    assert result.status == "done" and isinstance(result.correct, bool)
    assert result.answer in (None, "apple", "banana", "cherry")  # never a raw symbol
    for attempt in result.attempts:
        assert attempt["answer"] in (None, "apple", "banana", "cherry")
    if strategy == "auto":
        evidence = task_evidence(store, task.key)
        assert evidence["loo"]["n"] == 4  # leave-one-out ICL measured on the table's demonstrations


def test_ttt_on_a_table_trains_on_label_symbols_and_answers_file_labels(tiny):
    from models.ttt import TTTConfig, run_ttt, training_sequences
    from tests.models.test_ttt import state_hash

    task = fruit(k=6, queries=1)
    cfg = TTTConfig(steps=6, batch_size=4, lr=1e-2, train_views=4, predict_views=4)
    sequences = training_sequences(tiny, task, cfg, random.Random(0))
    assert len(sequences) == 6 * 4
    for seq in sequences:
        text, trained = seq[-1]
        assert trained and len(text) == 2 and text.endswith("\n")  # a label symbol and the newline
        assert text[0] in "ABC?"
    before = state_hash(tiny.model)
    result = run_ttt(tiny, task, task.test[0].input, cfg)
    assert result.steps_run == 6 and result.views == 4
    assert all(answer in ("apple", "banana", "cherry") for answer, _ in result.answers)
    assert state_hash(tiny.model) == before


def test_the_chat_prompt_role_plays_the_table():
    task = fruit(k=3, queries=1)
    parts = PromptParts(
        kind="tabular", function=task.function, demos=task.train, query=task.test[0].input, notes=[]
    )
    prompt = ChatRenderer().render(parts)
    assert prompt.messages is not None
    system, user = prompt.messages[0].content, prompt.messages[1].content
    assert "predict_fruit(weight_g: float, diameter_cm: float, length_cm: float, colour: str)" in system
    assert 'Literal["apple", "banana", "cherry"]' in system
    assert "Measurements of one piece of fruit" in system  # the sidecar description
    first = task.train[0].input
    assert f"weight_g={first['weight_g']!r}, diameter_cm={first['diameter_cm']!r}" in user
    assert "colour=" in user and "Output: " in user
    reg = rent(queries=1)
    reg_parts = PromptParts(kind="tabular", function=reg.function, demos=reg.train, query=reg.test[0].input)
    assert ChatRenderer().parse("Output: about 1,234.5 per month", "tabular", reg_parts) == 1234.5
