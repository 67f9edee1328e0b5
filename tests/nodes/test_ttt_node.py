"""The ``ttt`` node on a real tiny model: voting, no-augmentation arm, early stopping in the trace,
the adapter cache, and the bench's ``ttt-noaug`` variant."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END, START, StateGraph

from graph.context import Context
from graph.state import State
from nodes.ttt import make_ttt_node
from tasks.schema import Task
from tests.graph.conftest import reverse_task

pytestmark = pytest.mark.usefixtures("no_cached_adapters")


def run_ttt_node(model: Any, task: Task, context: Context) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the node alone in a real LangGraph graph; return its update and its streamed events."""
    builder = StateGraph(State, context_schema=Context)
    builder.add_node("ttt", make_ttt_node(model))
    builder.add_edge(START, "ttt")
    builder.add_edge("ttt", END)
    graph = builder.compile()
    state = {"task": task.model_dump(mode="json"), "query": {"input": task.test[0].input}, "notes": []}
    update: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    for part in graph.stream(state, context=context, stream_mode=["custom", "updates"], version="v2"):
        if part["type"] == "custom":
            events.append(part["data"])
        elif part["type"] == "updates":
            update.update(part["data"].get("ttt") or {})
    return update, events


def test_the_node_votes_and_a_second_query_reuses_the_cached_adapter(tiny):
    task = reverse_task("cached")
    # Enough steps at a high rate for the random tiny model to learn the answer format (digits, newline).
    ctx = Context(strategy="ttt", ttt_steps=30, ttt_lr=1e-2, ttt_views=3, ttt_recipe="trial", ttt_cache=2,
                  ttt_prior_votes="on")  # fmt: skip
    update, events = run_ttt_node(tiny, task, ctx)
    assert [e["step"] for e in events if "step" in e] == list(range(1, 31))
    [line] = update["trace"]
    # the prior votes too: 3 predictions without the adapter, 3 with it
    assert "30/30 steps" in line["message"] and "3 views of the adapter and 3 of the prior" in line["message"]
    assert update["attempts"][0]["strategy"] == "ttt"
    assert update["candidates"] and update["answer"] == update["candidates"][0]["answer"]
    # 30 steps of batch >= 1 ran at least 30 sequences' tokens, plus the 6 predictions
    cost = update["costs"][0]
    assert cost["prompt_tokens"] > 30 and cost["requests"] == 6
    assert update["attempts"][0]["tokens"] == cost["prompt_tokens"] + cost["completion_tokens"]
    again, events = run_ttt_node(tiny, task, ctx)
    assert not [e for e in events if "step" in e]  # nothing trained
    assert "reused cached adapter" in again["trace"][0]["message"]
    assert again["answer"] == update["answer"]


def test_without_augmentation_the_node_makes_one_greedy_prediction(tiny):
    ctx = Context(strategy="ttt", ttt_steps=2, ttt_views=4, ttt_augment=False, ttt_cache=0)
    update, _ = run_ttt_node(tiny, reverse_task(), ctx)
    assert "one greedy prediction" in update["trace"][0]["message"]
    assert len(update["candidates"]) <= 1
    assert f"probability {update['confidence']:.2f}" in update["trace"][0]["message"]
    assert (update["answer"] is None) == (update["confidence"] == 0.0)


def test_early_stopping_shows_the_steps_actually_run(tiny):
    # The learning rate cannot move the held-back loss, so training stops at the minimum (10 steps).
    ctx = Context(strategy="ttt", ttt_steps=40, ttt_lr=1e-12, ttt_views=2, ttt_early_stop=True, ttt_cache=0,
                  ttt_recipe="plain")  # fmt: skip
    update, events = run_ttt_node(tiny, reverse_task(), ctx)
    assert max(e["step"] for e in events if "step" in e) == 10
    assert any("stopped early after 10/40 steps" in e.get("message", "") for e in events)
    assert "10/40 steps (stopped early" in update["trace"][0]["message"]


def test_the_default_recipe_is_adaptive_and_plain_keeps_the_knobs():
    from nodes.ttt import config_from_context

    cfg = config_from_context(Context(strategy="ttt", ttt_early_stop=False))  # the recipe wins
    assert (cfg.loss_on, cfg.early_stop, cfg.episodes, cfg.max_sequences) == ("all", True, "loo+l2o", 60)
    for kind in ("grid", "list", "text"):
        assert config_from_context(Context(strategy="ttt"), kind) == cfg
    # tables default to plain (measured best on held-out synthetic tables); a named recipe is kept
    table = config_from_context(Context(strategy="ttt"), "tabular")
    assert (table.loss_on, table.episodes, table.max_sequences) == ("last", "loo", 250)
    adaptive_table = config_from_context(Context(strategy="ttt", ttt_recipe="adaptive"), "tabular")
    assert dataclasses.replace(adaptive_table, prior_votes=False) == cfg  # tables' prior votes: below
    trial = config_from_context(Context(strategy="ttt", ttt_recipe="trial", ttt_early_stop=True))
    assert trial.early_stop is False
    plain = config_from_context(Context(strategy="ttt", ttt_recipe="plain"))
    assert (plain.loss_on, plain.early_stop, plain.episodes) == ("last", True, "loo")
    # the prior's votes: by kind by default, on for tables (measured), off elsewhere; on / off any kind
    assert table.prior_votes and not cfg.prior_votes
    assert not config_from_context(Context(strategy="ttt"), "grid").prior_votes
    assert config_from_context(Context(strategy="ttt", ttt_prior_votes="on"), "tabular").prior_votes
    assert not config_from_context(Context(strategy="ttt", ttt_prior_votes="off"), "grid").prior_votes
    # no augmentation, no vote: the prior then has nothing to vote in
    assert not config_from_context(Context(strategy="ttt", ttt_augment=False)).prior_voting


def test_an_unknown_prior_votes_setting_is_one_line():
    from graph.errors import SettingsError

    with pytest.raises(
        SettingsError, match=r"ttt_prior_votes: got 'maybe'; expected one of by-kind, on, off"
    ):
        Context(strategy="ttt", ttt_prior_votes="maybe")


def test_a_reused_adapter_reports_no_training(tiny):
    ctx = Context(strategy="ttt", ttt_steps=40, ttt_lr=1e-12, ttt_views=2, ttt_early_stop=True, ttt_cache=1,
                  ttt_recipe="plain")  # fmt: skip
    run_ttt_node(tiny, reverse_task("again"), ctx)
    update, events = run_ttt_node(tiny, reverse_task("again"), ctx)
    assert not any("step" in e or "stopped early" in e.get("message", "") for e in events)
    assert update["trace"][0]["message"].startswith("reused cached adapter")


def test_bench_runs_the_no_augmentation_variant_beside_icl(tiny_checkpoint, tmp_path: Path, capsys):
    from graph.bench import main

    folder = tmp_path / "tasks" / "toy"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(reverse_task("a").model_dump_json())
    out = tmp_path / "bench.json"
    argv = ["--tasks", str(tmp_path / "tasks"), "--model", f"hf:{tiny_checkpoint}", "--samples", "1"]
    argv += ["--strategy", "icl,ttt-noaug", "--ttt-steps", "2", "--json", str(out)]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    runs = payload["runs"]
    assert [(r["strategy"], r["variant"]) for r in runs] == [("icl", "icl"), ("ttt", "ttt-noaug")]
    assert all(r["overall"]["seconds_per_query"] > 0 for r in runs)
    [ratio] = payload["vs_icl"]
    assert ratio["variant"] == "ttt-noaug" and ratio["seconds_ratio"] > 0
    printed = capsys.readouterr().out
    assert "ttt-noaug" in printed and "side by side" in printed


def test_bench_all_runs_every_strategy_the_router_and_the_oracle(tiny_checkpoint, tmp_path: Path, capsys):
    from graph.bench import main

    folder = tmp_path / "tasks" / "toy"
    folder.mkdir(parents=True)
    for name in ("a", "b"):
        (folder / f"{name}.json").write_text(reverse_task(name).model_dump_json())
    out, png = tmp_path / "bench.json", tmp_path / "router.png"
    argv = ["--tasks", str(tmp_path / "tasks"), "--model", f"hf:{tiny_checkpoint}", "--samples", "2"]
    argv += ["--strategy", "all", "--ttt-steps", "2", "--json", str(out), "--plot", str(png)]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    assert [r["variant"] for r in payload["runs"]] == ["icl", "select", "reflect", "ttt", "auto"]
    [(model, points)] = payload["strategies"].items()
    assert set(points) == {"icl", "select", "reflect", "ttt", "auto", "oracle"}
    # the oracle: per query, right when any fixed strategy was right (recomputed from the runs)
    runs = {r["variant"]: r["results"] for r in payload["runs"]}
    fixed = ("icl", "select", "reflect", "ttt")
    hits = [any(runs[s][i]["correct"] for s in fixed) for i in range(len(runs["icl"]))]
    assert points["oracle"]["accuracy"] == sum(hits) / len(hits)
    for s in fixed:
        assert points[s]["accuracy"] == sum(bool(r["correct"]) for r in runs[s]) / len(runs[s])
    standing = payload["router"][model]
    assert standing["best_fixed"] in ("icl", "select", "reflect", "ttt") and standing["compute_ratio"] > 0
    select_run = next(r for r in payload["runs"] if r["variant"] == "select")
    assert select_run["dg_tasks"] == 2 and isinstance(select_run["dg_diff"], float)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "strategies compared" in printed and "router (" in printed and "oracle" in printed


def test_on_a_table_the_answer_is_the_top_averaged_probability():
    from models.factory import load_model
    from tasks.tabular import TaskSplit, load_table_task

    model = load_model("embedded").for_kind("tabular")
    fruit = Path(__file__).resolve().parents[1] / "data" / "tables" / "fruit.csv"
    table = Task.model_validate(load_table_task(fruit, TaskSplit(k_shot=8, seed=0, queries=1)))
    update, _ = run_ttt_node(model, table, Context(strategy="ttt", ttt_steps=2))  # by-kind: the prior too
    [line] = update["trace"]
    assert (
        "label probabilities averaged over 4 views of the adapter and 4 of the prior (its share 0.75)"
        in (line["message"])
    )
    assert update["confidence"] < 1.0 and update["answer"] == update["candidates"][0]["answer"]
    assert {str(c["answer"]) for c in update["candidates"]} == {str(e.output) for e in table.train}
