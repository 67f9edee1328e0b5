"""The synthetic tabular prior: deterministic per seed, the issue's ranges, tables a model can learn."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from tasks.tabular_prior import PriorConfig, main, sample_table, sample_task


def test_same_seed_same_stream_other_seed_other_stream():
    a = [sample_task(7, i) for i in range(20)]
    b = [sample_task(7, i) for i in range(20)]
    c = [sample_task(8, i) for i in range(20)]
    assert a == b
    assert a != c
    assert sample_task(3, 11) == sample_task(3, 11)
    # table i depends on (seed, i) only: a run resumes at any table, in any order
    assert [sample_task(7, i) for i in reversed(range(20))] == a[::-1]


def test_tables_cover_the_priors_ranges():
    cfg = PriorConfig()
    tasks = [sample_task(0, i, cfg) for i in range(300)]
    kinds = Counter(t.function.target_type for t in tasks)
    assert 0.1 < kinds["regression"] / len(tasks) < 0.45
    widths = [len(t.train[0].input) for t in tasks]
    assert min(widths) >= 1 and max(widths) <= 30 and len(set(widths)) > 20
    classes = [len({e.output for e in t.train}) for t in tasks if t.function.target_type == "classification"]
    assert min(classes) >= 1 and max(classes) <= 6 and {2, 3, 4, 5, 6} <= set(classes)
    assert {t.type for t in tasks} == {"prior_scm", "prior_tree", "prior_linear", "prior_blobs"}
    cells = [v for t in tasks for e in t.train for v in e.input.values()]
    assert any(v is None for v in cells)  # missing values
    assert any(isinstance(v, str) for v in cells)  # categorical features
    # imbalance: some classification tables have a clear majority among their demonstrations
    shares = [
        max(Counter(e.output for e in t.train).values()) / len(t.train)
        for t in tasks
        if t.function.target_type == "classification"
    ]
    assert max(shares) > 0.6


def test_irrelevant_features_and_label_noise_are_recorded():
    metas = [sample_table(np.random.default_rng([0, i]), 50).meta for i in range(100)]
    assert any(m["irrelevant"] > 0 for m in metas)
    assert any(m.get("label_noise", 0) > 0 for m in metas)
    assert any(m["categorical"] > 0 for m in metas) and any(m["missing"] > 0 for m in metas)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="classes"):
        PriorConfig(classes=(1, 3))
    with pytest.raises(ValueError, match="mechanisms"):
        PriorConfig(mechanisms=("forest",))


def test_command_line_writes_loadable_tables(tmp_path):
    from tasks.loaders import load_any
    from tasks.tabular import TaskSplit

    assert main(["--out", str(tmp_path), "--tables", "4", "--rows", "40", "--seed", "5"]) == 0
    files = sorted(tmp_path.glob("*.csv"))
    assert len(files) == 4
    with files[0].open() as fh:
        header = next(csv.reader(fh))
    assert header[-1] == "y"
    tasks = load_any(tmp_path, TaskSplit(k_shot=8))
    assert len(tasks) == 4 and all(t.kind == "tabular" for t in tasks)
    assert main(["--out", str(tmp_path), "--tables", "0"]) == 2


def test_the_prior_has_signal_a_learner_can_read_from_sixteen_rows():
    """Logistic regression on the 16 demonstrations beats the majority class on the queries:
    tables whose labels the features do not predict would teach a model to ignore the rows."""
    pytest.importorskip("sklearn")
    from graph.baselines import run_baseline

    cfg = PriorConfig(queries=8, regression_p=0.0)
    hits: dict[str, list[bool]] = {"logreg": [], "majority": []}
    for i in range(80):
        task = sample_task(77, i, cfg, demos=16)
        for name, flags in hits.items():
            flags += [bool(r.correct) for r in run_baseline(name, task, list(range(len(task.test))))]
    logreg, majority = (sum(hits[n]) / len(hits[n]) for n in ("logreg", "majority"))
    assert logreg > majority + 0.08, (logreg, majority)


def test_mechanism_weights_change_the_mix_and_empty_weights_keep_the_old_stream():
    # {} is the uniform draw every earlier run trained on, table for table
    assert [sample_task(5, i, PriorConfig(mechanism_weights={})) for i in range(30)] == [
        sample_task(5, i) for i in range(30)
    ]
    n = 400
    uniform = Counter(sample_task(5, i).type for i in range(n))
    linear = Counter(sample_task(5, i, PriorConfig(mechanism_weights={"linear": 3.0})).type for i in range(n))
    # linear: 1/4 of classification and 1/3 of regression tables uniform; 3/6 and 3/5 weighted
    assert uniform["prior_linear"] / n < 0.35 < 0.45 < linear["prior_linear"] / n
    no_trees = {sample_task(5, i, PriorConfig(mechanism_weights={"tree": 0.0})).type for i in range(100)}
    assert no_trees == {"prior_scm", "prior_linear", "prior_blobs"}


def test_bad_mechanism_weights_are_refused():
    for weights in ({"forest": 1.0}, {"linear": -1.0}, {"linear": float("nan")}):
        with pytest.raises(ValueError, match="mechanism_weights"):
            PriorConfig(mechanism_weights=weights)
