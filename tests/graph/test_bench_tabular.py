"""The bench on tables: seeds, query caps, scikit-learn baselines on the same splits, regression metrics."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

TABLES = Path(__file__).resolve().parents[1] / "data" / "tables"


@pytest.fixture
def table_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tables"
    folder.mkdir()
    for name in ("fruit.csv", "fruit.md", "rent.csv"):
        shutil.copy(TABLES / name, folder / name)
    return folder


def test_bench_runs_strategies_and_baselines_on_the_same_splits(tiny_checkpoint, table_dir, tmp_path, capsys):
    from graph.bench import main

    out = tmp_path / "bench.json"
    argv = ["--tasks", str(table_dir), "--model", f"hf:{tiny_checkpoint}", "--samples", "1"]
    argv += ["--strategy", "icl", "--k-shot", "16", "--seeds", "2", "--queries", "4"]
    argv += ["--baselines", "knn,logreg,gbm,knnreg,ridge", "--tolerance", "0.5", "--json", str(out)]
    assert main(argv) == 0
    payload = json.loads(out.read_text())
    runs = {r["variant"]: r for r in payload["runs"]}
    assert list(runs) == ["icl", "knn", "logreg", "gbm", "knnreg", "ridge"]
    assert {r["model"] for v, r in runs.items() if v != "icl"} == {"sklearn"}
    # the model answers 2 tables x 2 seeds x 4 queries; classifiers the fruit splits, regressors the rent ones
    assert runs["icl"]["overall"]["queries"] == 16
    assert runs["knn"]["overall"]["queries"] == runs["ridge"]["overall"]["queries"] == 8
    asked = {(q["task_id"], q["query_index"]) for q in runs["icl"]["results"]}
    for name in ("knn", "logreg", "gbm", "knnreg", "ridge"):
        assert {(q["task_id"], q["query_index"]) for q in runs[name]["results"]} <= asked
    assert Counter(q["task_id"] for q in runs["icl"]["results"]) == {
        "fruit@seed0": 4, "fruit@seed1": 4, "rent@seed0": 4, "rent@seed1": 4,
    }  # fmt: skip
    # fruit is easy: fitted on the same 16 demonstrations, the baselines get it right
    assert runs["knn"]["overall"]["accuracy"] >= 0.75 and runs["logreg"]["overall"]["accuracy"] >= 0.75
    assert all(q["answer"] in ("apple", "banana", "cherry") for q in runs["gbm"]["results"])
    # regression rows carry MAE and R²; a ridge fit beats guessing by far on rents of 300-1,600
    rent = {row["type"]: row for row in runs["ridge"]["rows"]}["rent"]
    assert rent["mae"] is not None and rent["mae"] < 250 and rent["r2"] is not None
    icl_rent = {row["type"]: row for row in runs["icl"]["rows"]}["rent"]
    assert icl_rent["mae"] is not None  # unparseable answers count as the demonstrations' mean
    fruit_row = {row["type"]: row for row in runs["icl"]["rows"]}["fruit"]
    assert fruit_row["mae"] is None
    assert all(p["label"] for p in payload["strategies"]["sklearn"].values())
    printed = capsys.readouterr().out
    assert "side by side" in printed and "MAE" in printed and "strategies compared" in printed


def test_bench_baseline_flags_are_checked(tiny_checkpoint, table_dir):
    from tests.graph.test_cli import assert_user_error, run_cli

    base = ["--tasks", str(table_dir), "--model", f"hf:{tiny_checkpoint}"]
    assert_user_error(
        run_cli(*base, "--baselines", "knn,forest", module="graph.bench"), "--baselines", "forest"
    )
    assert_user_error(run_cli(*base, "--seeds", "0", module="graph.bench"), "--seeds")
    assert_user_error(run_cli(*base, "--queries", "0", module="graph.bench"), "--queries")
