"""Augmenters: exact inverses, consistent task transforms, reproducible views, the vote."""

from __future__ import annotations

import random

import pytest

from tasks.augment import (
    Chain,
    ColourPermutation,
    FlipHorizontal,
    FlipVertical,
    Identity,
    Rotate,
    Transpose,
    augment_task,
    hierarchical_vote,
    sample_views,
)
from tasks.generators import sample_task
from tasks.schema import Task

GRID = [[0, 1, 2], [3, 4, 5]]  # not square: rotations and transposes change the shape


@pytest.mark.parametrize(
    "aug",
    [
        Identity(),
        FlipHorizontal(),
        FlipVertical(),
        Transpose(),
        Rotate(1),
        Rotate(2),
        Rotate(3),
        ColourPermutation.sample(random.Random(3)),
        Chain([Rotate(1), ColourPermutation.sample(random.Random(4)), FlipHorizontal()]),
    ],
)
def test_inverse_undoes_apply(aug):
    assert aug.inverse(aug.apply(GRID)) == GRID
    assert aug.apply(GRID) is not GRID


def test_known_transforms():
    assert FlipHorizontal().apply(GRID) == [[2, 1, 0], [5, 4, 3]]
    assert Rotate(1).apply(GRID) == [[3, 0], [4, 1], [5, 2]]
    assert Transpose().apply(GRID) == [[0, 3], [1, 4], [2, 5]]
    perm = ColourPermutation({1: 2, 2: 1})
    assert perm.apply([[0, 1, 2, 3]]) == [[0, 2, 1, 3]]  # background and unmapped colours stay
    with pytest.raises(ValueError, match="permute"):
        ColourPermutation({0: 1, 1: 0})


def test_augmented_task_keeps_its_rule():
    """A mirrored 'shift right' task is a consistent 'shift left' task."""
    task = sample_task(random.Random(0), "shift", n_train=3)
    view = Chain([FlipHorizontal(), ColourPermutation.sample(random.Random(1))])
    seen = augment_task(task, view)
    assert isinstance(seen, Task)
    for original, augmented in zip(task.train, seen.train, strict=True):
        assert augmented.input == view.apply(original.input)
        assert view.inverse(augmented.output) == original.output
    assert view.inverse(seen.test[0].target) == task.test[0].target


def test_views_are_reproducible_distinct_and_fit_the_task():
    one_d = sample_task(random.Random(0), "mirror")
    views = sample_views(random.Random(7), one_d, 6)
    assert [v.name for v in views] == [v.name for v in sample_views(random.Random(7), one_d, 6)]
    assert len({v.name for v in views}) == len(views) == 6
    assert views[0].name == "identity"
    # 1-D tasks never get rotations or transposes (they would turn rows into columns)
    assert not any("rotate" in v.name or "transpose" in v.name or "flip_v" in v.name for v in views)
    assert all(len(v.apply(one_d.train[0].input)) == 1 for v in views)


def test_hierarchical_vote_groups_by_family():
    a, b, c = [[1]], [[2]], [[3]]
    predictions = [
        ("identity", a),
        ("identity", a),
        ("identity", b),
        ("flip_h", b),
        ("flip_h", b),
        ("flip_h", c),
        ("flip_h", None),
    ]
    ranked = hierarchical_vote(predictions, per_family=1, top=2)
    # per family top-1: identity -> a (2 votes), flip_h -> b (2 votes); tie broken by first seen
    assert ranked == [(a, round(2 / 6, 4)), (b, round(2 / 6, 4))]
    assert hierarchical_vote([("x", None)]) == []
    assert hierarchical_vote(predictions, per_family=3, top=1) == [(b, 0.5)]


# --- tables --------------------------------------------------------------------------------------

TABLE_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "tables"


def fruit_task(k: int = 9) -> Task:
    from tasks.loaders import load_tasks
    from tasks.tabular import TaskSplit

    return load_tasks(TABLE_DIR / "fruit.csv", TaskSplit(k_shot=k, seed=0, queries=5))[0]


def test_table_views_have_exact_inverses():
    from tasks.augment import TableView

    task = fruit_task()
    columns = list(task.train[0].input)
    view = TableView(
        row_seed=3,
        columns=columns[::-1],
        labels=[("apple", "cherry"), ("banana", "apple"), ("cherry", "banana")],
    )
    rows = [e.input for e in task.train]
    assert view.reorder(rows) != rows and view.unorder(view.reorder(rows)) == rows
    for row in rows:
        shown = view.apply(row)
        assert list(shown) == columns[::-1] and shown == row  # same cells, other order
        assert list(view.inverse_input(shown, columns)) == columns
    for label in ("apple", "banana", "cherry"):
        assert view.inverse(view.apply_output(label)) == label
    assert view.apply_output("apple") == "cherry" and view.apply_output("kiwi") == "kiwi"
    with pytest.raises(ValueError, match="permute"):
        TableView(labels=[("apple", "kiwi")])


def test_a_table_seen_through_a_view_predicts_the_same_labels_back():
    """Render the viewed task, encode the viewed target, decode it, invert: the file's label."""
    from models.base import PromptParts
    from prompts.compact import CompactRenderer

    task = fruit_task()
    renderer = CompactRenderer()
    views = sample_views(random.Random(0), task, 6)
    assert len(views) == 6 and len({v.name for v in views}) == 6
    assert any("labels:" in v.name for v in views) and any("cols:" in v.name for v in views)
    texts = set()
    for view in views:
        seen = augment_task(task, view)
        assert sorted(map(str, (e.output for e in seen.train))) == sorted(
            map(str, (e.output for e in task.train))
        )
        for q, original in zip(seen.test, task.test, strict=True):
            parts = PromptParts(kind="tabular", function=task.function, demos=seen.train, query=q.input)
            texts.add(renderer.render(parts).text)
            symbol = renderer.format_value(q.target, "tabular", parts)
            assert view.inverse(renderer.parse(symbol, "tabular", parts)) == original.target
    assert len(texts) > 5  # the views change what the model reads
    assert [v.name for v in sample_views(random.Random(0), task, 6)] == [v.name for v in views]


def test_regression_tables_are_not_label_permuted():
    from tasks.loaders import load_tasks
    from tasks.tabular import TaskSplit

    task = load_tasks(TABLE_DIR / "rent.csv", TaskSplit(k_shot=8, seed=0))[0]
    views = sample_views(random.Random(1), task, 5)
    assert all("labels:" not in v.name for v in views)
