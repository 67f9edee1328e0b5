"""Invertible task augmentations and voting over augmented predictions (test-time training).

An augmenter transforms every grid of a task the same way, so the task's rule stays consistent
(a mirrored task is a task too), and has a real :meth:`Augmenter.inverse`, so a prediction made
in the augmented view maps back to the original one. Tables have their own views
(:class:`TableView`): the demonstrations' row order, the column order and a permutation of the
class labels, each with a real inverse; a permuted label predicted in the view maps back to the
file's label. Augmenters compose (:class:`Chain`), take an
explicit RNG when they are drawn (:func:`sample_views`), and predictions are voted on grouped by
the transform family that produced them (:func:`hierarchical_vote`), as in Akyürek et al. (2025).

Example::

    views = sample_views(random.Random(0), task, 4)
    predictions = [(v, predict(augment_task(task, v))) for v in views]
    ranked = hierarchical_vote([(v.family, v.inverse(p)) for v, p in predictions if p])
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tasks.schema import Grid, Task


class Augmenter:
    """A transformation of a task's values with an exact inverse.

    ``apply`` transforms an input, ``apply_output`` an output (the same transform for grids) and
    ``inverse`` undoes ``apply_output``, mapping a prediction made in the view back.
    """

    #: Name shown in traces; equal names mean equal transforms.
    name: str = "identity"
    #: Group for the hierarchical vote (e.g. all colour permutations are one family).
    family: str = "identity"

    def apply(self, grid: Grid) -> Grid:
        """Transform one grid (the identity leaves any other value as it is)."""
        return [list(row) for row in grid] if isinstance(grid, list) else grid

    def inverse(self, grid: Grid) -> Grid:
        """Undo :meth:`apply`: ``inverse(apply(g)) == g`` for every grid."""
        return [list(row) for row in grid] if isinstance(grid, list) else grid

    def apply_output(self, value: Any) -> Any:
        """Transform an output value (grids: as :meth:`apply`)."""
        return self.apply(value)


class Identity(Augmenter):
    """Leaves grids as they are."""


class FlipHorizontal(Augmenter):
    """Mirrors every row (for 1-D grids: reverses the row)."""

    name = family = "flip_h"

    def apply(self, grid: Grid) -> Grid:
        return [list(reversed(row)) for row in grid]

    def inverse(self, grid: Grid) -> Grid:
        return self.apply(grid)


class FlipVertical(Augmenter):
    """Reverses the order of rows."""

    name = family = "flip_v"

    def apply(self, grid: Grid) -> Grid:
        return [list(row) for row in reversed(grid)]

    def inverse(self, grid: Grid) -> Grid:
        return self.apply(grid)


class Transpose(Augmenter):
    """Swaps rows and columns."""

    name = family = "transpose"

    def apply(self, grid: Grid) -> Grid:
        return [list(col) for col in zip(*grid, strict=True)]

    def inverse(self, grid: Grid) -> Grid:
        return self.apply(grid)


@dataclass
class Rotate(Augmenter):
    """Rotates by ``quarter_turns`` x 90 degrees clockwise."""

    quarter_turns: int = 1
    family: str = field(default="rotate", init=False)

    def __post_init__(self) -> None:
        self.quarter_turns %= 4
        self.name = f"rotate{90 * self.quarter_turns}"

    @staticmethod
    def _once(grid: Grid) -> Grid:
        return [list(col) for col in zip(*grid[::-1], strict=True)]

    def apply(self, grid: Grid) -> Grid:
        for _ in range(self.quarter_turns):
            grid = self._once(grid)
        return [list(row) for row in grid]

    def inverse(self, grid: Grid) -> Grid:
        for _ in range((4 - self.quarter_turns) % 4):
            grid = self._once(grid)
        return [list(row) for row in grid]


@dataclass
class ColourPermutation(Augmenter):
    """Renames the non-background colours 1-9 by a permutation; 0 stays the background."""

    mapping: dict[int, int] = field(default_factory=dict)
    family: str = field(default="colours", init=False)

    def __post_init__(self) -> None:
        if sorted(self.mapping) != sorted(self.mapping.values()) or 0 in self.mapping:
            raise ValueError("mapping must permute colours 1-9 among themselves")
        self.name = "colours:" + "".join(str(self.mapping.get(c, c)) for c in range(1, 10))
        self._inverse = {v: k for k, v in self.mapping.items()}

    @classmethod
    def sample(cls, rng: random.Random) -> ColourPermutation:
        """A random permutation of 1-9 (drawn from ``rng``)."""
        colours = list(range(1, 10))
        shuffled = colours[:]
        rng.shuffle(shuffled)
        return cls(dict(zip(colours, shuffled, strict=True)))

    def apply(self, grid: Grid) -> Grid:
        return [[self.mapping.get(c, c) for c in row] for row in grid]

    def inverse(self, grid: Grid) -> Grid:
        return [[self._inverse.get(c, c) for c in row] for row in grid]


@dataclass
class Chain(Augmenter):
    """Applies augmenters in order; the inverse undoes them in reverse order."""

    steps: list[Augmenter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = "+".join(s.name for s in self.steps) or "identity"
        # Vote family: the geometric part, so colour-permuted views of one geometry vote together.
        self.family = "+".join(s.family for s in self.steps if s.family != "colours") or "identity"

    def apply(self, grid: Grid) -> Grid:
        for step in self.steps:
            grid = step.apply(grid)
        return [list(row) for row in grid]

    def inverse(self, grid: Grid) -> Grid:
        for step in reversed(self.steps):
            grid = step.inverse(grid)
        return [list(row) for row in grid]


def _label_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass
class TableView(Augmenter):
    """A view of a table task: demonstrations reordered, columns reordered, class labels permuted.

    Each part is optional and has an exact inverse: :meth:`unorder` restores the demonstrations'
    order, :meth:`inverse_input` a row's column order, :meth:`inverse` a label. ``apply`` reorders
    a row's columns and ``apply_output`` renames a label; the label permutation maps the classes
    among themselves (a label outside it passes unchanged).

    Args:
        row_seed: Seed of the demonstrations' permutation (``None`` = order kept).
        columns: The new column order (``None`` = kept); columns not listed keep their place after.
        labels: Old label -> new label pairs, a permutation of a set of classes.
    """

    row_seed: int | None = None
    columns: list[str] | None = None
    labels: list[tuple[Any, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        old = sorted(_label_key(a) for a, _ in self.labels)
        new = sorted(_label_key(b) for _, b in self.labels)
        if old != new:
            raise ValueError("labels must permute a set of classes among themselves")
        self._forward = {_label_key(a): b for a, b in self.labels}
        self._backward = {_label_key(b): a for a, b in self.labels}
        parts = []
        if self.row_seed is not None:
            parts.append(f"rows{self.row_seed}")
        if self.columns is not None:
            parts.append("cols:" + ",".join(self.columns))
        if any(_label_key(a) != _label_key(b) for a, b in self.labels):
            parts.append("labels:" + ",".join(_label_key(b) for _, b in self.labels))
        self.name = "+".join(parts) or "identity"
        # Vote family: the column order; row orders and label names vote together within it.
        self.family = "columns" if self.columns is not None else "identity"

    def _permutation(self, n: int) -> list[int]:
        order = list(range(n))
        if self.row_seed is not None:
            random.Random(self.row_seed).shuffle(order)
        return order

    def reorder(self, items: list[Any]) -> list[Any]:
        """The demonstrations in the view's order."""
        return [items[i] for i in self._permutation(len(items))]

    def unorder(self, items: list[Any]) -> list[Any]:
        """Undo :meth:`reorder`: ``unorder(reorder(xs)) == xs``."""
        out: list[Any] = [None] * len(items)
        for pos, i in enumerate(self._permutation(len(items))):
            out[i] = items[pos]
        return out

    def apply(self, row: Any) -> Any:
        """A row with its columns in the view's order."""
        if self.columns is None or not isinstance(row, dict):
            return dict(row) if isinstance(row, dict) else row
        head = [c for c in self.columns if c in row]
        return {c: row[c] for c in head + [c for c in row if c not in head]}

    def inverse_input(self, row: dict[str, Any], original: list[str]) -> dict[str, Any]:
        """Undo :meth:`apply` given the row's ``original`` column order."""
        return {c: row[c] for c in original if c in row} | {c: v for c, v in row.items() if c not in original}

    def apply_output(self, value: Any) -> Any:
        """The label's name in the view."""
        return self._forward.get(_label_key(value), value)

    def inverse(self, value: Any) -> Any:
        """The file's label for a label predicted in the view."""
        return self._backward.get(_label_key(value), value)


def table_classes(task: Task) -> list[Any]:
    """The distinct labels of a classification table's demonstrations (sorted; [] for regression)."""
    if task.kind != "tabular" or task.function.target_type == "regression":
        return []
    keys = sorted({_label_key(e.output) for e in task.train})
    return [json.loads(k) for k in keys]


def sample_table_view(rng: random.Random, task: Task) -> TableView:
    """A random view of a table: rows reordered, and often columns reordered and labels permuted."""
    columns = list(task.train[0].input) if task.train and isinstance(task.train[0].input, dict) else []
    order = None
    if len(columns) > 1 and rng.random() < 0.5:
        order = columns[:]
        rng.shuffle(order)
    labels: list[tuple[Any, Any]] = []
    classes = table_classes(task)
    if len(classes) > 1 and rng.random() < 0.7:
        shuffled = classes[:]
        rng.shuffle(shuffled)
        labels = list(zip(classes, shuffled, strict=True))
    return TableView(row_seed=rng.randrange(1 << 30), columns=order, labels=labels)


def is_one_dimensional(task: Task) -> bool:
    """True when every grid of the task is a single row (1D-ARC style)."""
    grids = [e.input for e in task.train] + [e.output for e in task.train] + [q.input for q in task.test]
    return all(len(g) == 1 for g in grids)


def geometric_views(task: Task) -> list[Augmenter]:
    """The geometric transforms that keep a grid task a task of the same shape family."""
    if is_one_dimensional(task):
        return [Identity(), FlipHorizontal()]  # 2-D transforms would turn rows into columns
    return [Identity(), FlipHorizontal(), FlipVertical(), Transpose(), Rotate(1), Rotate(2), Rotate(3)]


def sample_views(rng: random.Random, task: Task, n: int, *, colours: bool = True) -> list[Augmenter]:
    """``n`` distinct views of ``task``: the identity first, then geometric x colour chains.

    Tables get :class:`TableView` s (row order, column order, label permutation) instead.

    Args:
        rng: The RNG every random choice comes from (reproducible views).
        task: A grid or table task.
        n: How many views (fewer if the task has fewer distinct ones).
        colours: Whether to add colour permutations.
    """
    if task.kind == "tabular":
        table_views: list[Augmenter] = [Identity()]
        table_seen = {"identity"}
        for _ in range(20 * n):
            if len(table_views) >= n:
                break
            view = sample_table_view(rng, task)
            if view.name not in table_seen:
                table_seen.add(view.name)
                table_views.append(view)
        return table_views
    if task.kind != "grid":
        return [Identity()]
    geometric = geometric_views(task)
    views: list[Augmenter] = [Identity()]
    seen = {views[0].name}
    for _ in range(20 * n):
        if len(views) >= n:
            break
        steps = [rng.choice(geometric)]
        if colours and rng.random() < 0.7:
            steps.append(ColourPermutation.sample(rng))
        chain = Chain([s for s in steps if not isinstance(s, Identity)])
        if chain.name not in seen:
            seen.add(chain.name)
            views.append(chain)
    return views


def augment_task(task: Task, view: Augmenter) -> Task:
    """The whole task seen through ``view`` (demonstrations, queries and targets alike)."""
    table = view if task.kind == "tabular" and isinstance(view, TableView) else None
    if table is None and task.kind != "grid":
        return task
    output = table.apply_output if table is not None else view.apply  # a table view renames labels
    train = [
        e.model_copy(update={"input": view.apply(e.input), "output": output(e.output)}) for e in task.train
    ]
    test = [
        q.model_copy(
            update={"input": view.apply(q.input), "target": None if q.target is None else output(q.target)}
        )
        for q in task.test
    ]
    return task.model_copy(
        update={"train": table.reorder(train) if table is not None else train, "test": test}
    )


def _key(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def hierarchical_vote(
    predictions: list[tuple[str, Any]], *, per_family: int = 3, top: int = 2
) -> list[tuple[Any, float]]:
    """Rank answers: the ``per_family`` most common within each family, then across families.

    Args:
        predictions: ``(family, answer)`` pairs, answers already mapped back by their inverse.
        per_family: Candidates kept from each family before the cross-family vote.
        top: How many answers to return (2 = pass@2).

    Returns:
        ``(answer, share)`` pairs, best first; ``share`` is the answer's share of all votes
        (the confidence).
    """
    answers = [(fam, a) for fam, a in predictions if a is not None]
    if not answers:
        return []
    by_family: dict[str, Counter[str]] = defaultdict(Counter)
    value_of: dict[str, Any] = {}
    for fam, answer in answers:
        key = _key(answer)
        by_family[fam][key] += 1
        value_of[key] = answer
    overall: Counter[str] = Counter()
    for counts in by_family.values():
        for key, votes in counts.most_common(per_family):
            overall[key] += votes
    total = len(answers)
    return [(value_of[k], round(v / total, 4)) for k, v in overall.most_common(top)]
