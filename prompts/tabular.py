"""The compact serialization of tables for the embedded model: one character per cell.

A character-level model with a 1,024-token context cannot read ``sepal_length=5.1`` thirty
times a row for sixteen rows, so a table is written one character per feature and one per label,
with every symbol fitted on the *demonstrations* of the prompt (:meth:`TableCodec.fit`)::

    I27a_OB\n     <- a demonstration: features, then "O" and the label's symbol
    I90b3O        <- the query; the model writes the label's symbol and a newline

* **numeric feature** → a digit ``0``-``9``: the decile of the value's mid-rank among the
  demonstrations' values (a per-feature quantile bin: ``0`` = the lowest values seen, ``9`` = the
  highest, a two-valued feature is ``2``/``7``); a query value between two demonstration values
  takes the nearer one's digit (edges at midpoints); values outside the range take the end's;
* **categorical feature** (text, booleans) → a lower-case letter per category seen, in sorted
  order; ``?`` for a category no demonstration has;
* **missing value** → ``_``;
* **class label** → an upper-case letter per class seen (sorted; ``I`` and ``O`` left out: they
  mark lines), ``?`` for a class no demonstration has;
* **regression label** → a digit, binned like a numeric feature; it decodes to the mean label of
  the demonstrations in that bin (interpolated for a digit no demonstration has).

It is invertible where it must be: :meth:`TableCodec.decode_label` maps a class symbol back to the
file's exact label, a categorical symbol back to its category, and a digit back to the interval of
values that encode to it (:meth:`TableCodec.decode_row`). Sixteen demonstrations of thirty
features take 16 x 34 + 32 = 576 characters.

Features are written in the order of the first demonstration's keys, so a view that reorders
columns (``tasks.augment.ColumnOrder``) changes the serialization, and one that permutes labels
(``tasks.augment.LabelPermutation``) changes which symbol each class gets.

A table of more than :data:`MAX_FEATURES` features keeps the ones that say most about the label
*on the demonstrations* (:func:`relevance`), in their order: the table model was trained on 1-30
features, and a column position it never saw reads as noise (a 64-pixel table, 5 digits, 16 rows:
61 % with every column, kNN 83 %).
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tasks.schema import Task

INPUT_MARK = "I"
OUTPUT_MARK = "O"
END = "\n"
MISSING = "_"
UNSEEN = "?"
#: Quantile bins of numeric features and regression labels (digits).
BINS = 10
#: Most features written per row: the widest tables the table model trained on (the prior draws
#: 1-30 features); wider tables keep their most relevant columns (see the module doc).
MAX_FEATURES = 30
CATEGORY_SYMBOLS = "abcdefghijklmnopqrstuvwxyz"
#: Class symbols: upper case without the line markers, then lower case.
CLASS_SYMBOLS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in "IO") + CATEGORY_SYMBOLS


def _key(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value + '"' if value.isascii() and value.isalnum() else json.dumps(value)
    return json.dumps(value, sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Bins:
    """Quantile bins fitted on some values: segment edges and the digit of each segment."""

    edges: list[float] = field(default_factory=list)  # len(digits) - 1 midpoints, ascending
    digits: list[int] = field(default_factory=list)  # the digit of each segment, non-decreasing

    @classmethod
    def fit(cls, values: list[float], bins: int = BINS) -> Bins:
        """Each distinct value's digit is the decile of its mid-rank; equal-digit neighbours merge."""
        if not values:
            return cls()
        ordered = sorted(values)
        n = len(ordered)
        distinct = sorted(set(ordered))
        digits_of = []
        below = 0
        for v in distinct:
            count = bisect.bisect_right(ordered, v) - bisect.bisect_left(ordered, v)
            digits_of.append(min(bins - 1, int((below + count / 2) / n * bins)))
            below += count
        edges, digits = [], [digits_of[0]]
        for i in range(1, len(distinct)):
            if digits_of[i] != digits[-1]:
                edges.append((distinct[i - 1] + distinct[i]) / 2)
                digits.append(digits_of[i])
        return cls(edges, digits)

    def digit(self, value: float) -> int | None:
        """The digit of ``value`` (``None`` when nothing was fitted)."""
        if not self.digits:
            return None
        return self.digits[bisect.bisect_right(self.edges, value)]

    def interval(self, digit: int) -> tuple[float, float] | None:
        """The values ``(low, high]``-ish that encode to ``digit`` (``None`` if none do)."""
        if digit not in self.digits:
            return None
        i = self.digits.index(digit)
        lo = self.edges[i - 1] if i > 0 else -math.inf
        hi = self.edges[i] if i < len(self.edges) else math.inf
        return lo, hi


@dataclass
class FeatureCodec:
    """How one feature is written: numeric bins or categorical symbols."""

    name: str
    numeric: bool
    bins: Bins = field(default_factory=Bins)
    categories: list[Any] = field(default_factory=list)  # symbol i = CATEGORY_SYMBOLS[i]

    def __post_init__(self) -> None:
        self._symbols = {_key(c): CATEGORY_SYMBOLS[i] for i, c in enumerate(self.categories)}

    @classmethod
    def fit(cls, name: str, values: list[Any], bins: int = BINS) -> FeatureCodec:
        present = [v for v in values if v is not None]
        if present and all(_is_number(v) for v in present):
            return cls(name, True, bins=Bins.fit([float(v) for v in present], bins))
        cats = sorted({_key(v) for v in present})[: len(CATEGORY_SYMBOLS)]
        return cls(name, False, categories=[json.loads(c) for c in cats])

    def encode(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        if self.numeric:
            if not _is_number(value):
                return UNSEEN
            digit = self.bins.digit(float(value))
            return UNSEEN if digit is None else str(digit)
        return self._symbols.get(_key(value), UNSEEN)

    def decode(self, symbol: str) -> Any:
        """A category, a ``(low, high)`` interval for a digit, or ``None`` (missing / unknown)."""
        if symbol in (MISSING, UNSEEN):
            return None
        if self.numeric:
            return self.bins.interval(int(symbol)) if symbol.isdigit() else None
        i = CATEGORY_SYMBOLS.find(symbol)
        return self.categories[i] if 0 <= i < len(self.categories) else None


@dataclass
class TableCodec:
    """Symbols of one prompt's table, fitted on its demonstrations (see the module docstring)."""

    features: list[FeatureCodec]
    regression: bool = False
    classes: list[Any] = field(default_factory=list)  # symbol i = CLASS_SYMBOLS[i]
    target_bins: Bins = field(default_factory=Bins)
    target_means: dict[int, float] = field(default_factory=dict)  # digit -> mean label

    def __post_init__(self) -> None:
        self._symbols = {_key(c): CLASS_SYMBOLS[i] for i, c in enumerate(self.classes)}

    @classmethod
    def fit(
        cls,
        rows: list[dict[str, Any]],
        labels: list[Any],
        *,
        regression: bool = False,
        columns: list[str] | None = None,
        bins: int = BINS,
        max_features: int = MAX_FEATURES,
    ) -> TableCodec:
        """Fit on demonstration rows and their labels.

        Args:
            rows: Feature mappings; their first row's keys give the column order (unless ``columns``).
            labels: The rows' labels.
            regression: Whether labels are numbers to bin (else classes).
            columns: The column order when there are no rows (e.g. the query's keys).
            bins: Quantile bins (digits) of numeric values.
            max_features: Most columns written; wider tables keep the most relevant ones
                (:func:`select_columns`, on these rows), in their order.

        Raises:
            ValueError: More classes than symbols (50), or a non-numeric regression label.
        """
        order = list(rows[0]) if rows else list(columns or [])
        if len(order) > max_features:
            order = select_columns(order, rows, labels, regression=regression, keep=max_features)
        features = [FeatureCodec.fit(c, [r.get(c) for r in rows], bins) for c in order]
        if regression:
            values = [float(v) for v in labels if _is_number(v)]
            if len(values) != len([v for v in labels if v is not None]):
                raise ValueError("regression labels must be numbers")
            target = Bins.fit(values, bins)
            groups: dict[int, list[float]] = {}
            for v in values:
                groups.setdefault(int(target.digit(v) or 0), []).append(v)
            means = {d: sum(g) / len(g) for d, g in groups.items()}
            return cls(features, True, target_bins=target, target_means=means)
        classes = sorted({_key(v) for v in labels if v is not None})
        if len(classes) > len(CLASS_SYMBOLS):
            raise ValueError(f"{len(classes)} classes; the compact format has {len(CLASS_SYMBOLS)} symbols")
        return cls(features, False, classes=[json.loads(c) for c in classes])

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.features]

    def encode_row(self, row: dict[str, Any]) -> str:
        """One character per feature, in the codec's column order (absent keys are missing)."""
        return "".join(f.encode(row.get(f.name)) for f in self.features)

    def decode_row(self, text: str) -> dict[str, Any]:
        """Per feature: its category, the interval of its digit, or ``None``."""
        return {f.name: f.decode(ch) for f, ch in zip(self.features, text, strict=False)}

    def encode_label(self, value: Any) -> str:
        """The label's symbol (``?`` for a class or value the demonstrations do not have)."""
        if self.regression:
            if not _is_number(value):
                return UNSEEN
            digit = self.target_bins.digit(float(value))
            return UNSEEN if digit is None else str(digit)
        return self._symbols.get(_key(value), UNSEEN)

    def decode_label(self, text: str) -> Any | None:
        """The label a symbol stands for (the first non-blank character of ``text``); else ``None``."""
        symbol = text.split(END, 1)[0].strip()[:1]
        if not symbol:
            return None
        if self.regression:
            return self._digit_value(int(symbol)) if symbol.isdigit() else None
        i = CLASS_SYMBOLS.find(symbol)
        return self.classes[i] if 0 <= i < len(self.classes) else None

    def _digit_value(self, digit: int) -> float | None:
        """The mean label of a digit's bin; between the nearest used digits for an unused one."""
        if not self.target_means:
            return None
        if digit in self.target_means:
            return self.target_means[digit]
        used = sorted(self.target_means)
        if digit < used[0]:
            return self.target_means[used[0]]
        if digit > used[-1]:
            return self.target_means[used[-1]]
        hi = used[bisect.bisect_left(used, digit)]
        lo = used[bisect.bisect_left(used, digit) - 1]
        w = (digit - lo) / (hi - lo)
        return self.target_means[lo] * (1 - w) + self.target_means[hi] * w

    def encode_pair(self, row: dict[str, Any], label: Any) -> str:
        """A demonstration line: ``I<row>O<label>\\n``."""
        return f"{INPUT_MARK}{self.encode_row(row)}{OUTPUT_MARK}{self.encode_label(label)}{END}"

    def encode_query(self, row: dict[str, Any]) -> str:
        """The open query line: ``I<row>O``."""
        return f"{INPUT_MARK}{self.encode_row(row)}{OUTPUT_MARK}"


def _ranks(values: list[float]) -> list[float]:
    """Mid-ranks (ties share the mean of their positions)."""
    ordered = sorted(values)
    return [(bisect.bisect_left(ordered, v) + bisect.bisect_right(ordered, v) - 1) / 2 for v in values]


def _eta_squared(values: list[float], groups: list[str]) -> float:
    """Share of the variance of ``values`` between ``groups`` (0 = the groups tell nothing)."""
    mean = sum(values) / len(values)
    total = sum((v - mean) ** 2 for v in values)
    if total <= 0:
        return 0.0
    by: dict[str, list[float]] = {}
    for v, g in zip(values, groups, strict=True):
        by.setdefault(g, []).append(v)
    between = sum(len(xs) * (sum(xs) / len(xs) - mean) ** 2 for xs in by.values())
    return between / total


def relevance(values: list[Any], labels: list[Any], *, regression: bool) -> float:
    """How much a feature says about the label on the demonstrations, in [0, 1].

    Rank-based, so a scale or an outlier does not matter: for a numeric feature and classes, the
    share of its ranks' variance between the classes (Kruskal-Wallis's eta squared); for a
    category and classes, Cramér's V squared; for a regression label, the squared rank
    correlation with a numeric feature, or the share of the label ranks' variance between a
    category's values. Rows where the feature or the label is missing (or a regression label is
    not a number) are left out; a feature
    with fewer than three such rows, or a single value, scores 0.
    """
    pairs = [
        (v, y)
        for v, y in zip(values, labels, strict=True)
        if v is not None and not (isinstance(v, float) and math.isnan(v))
        and y is not None and (not regression or _is_number(y))
    ]  # fmt: skip
    if len(pairs) < 3:
        return 0.0
    numeric = all(_is_number(v) for v, _ in pairs)
    if regression:
        ys = _ranks([float(y) for _, y in pairs])
        if not numeric:
            return _eta_squared(ys, [_key(v) for v, _ in pairs])
        xs = _ranks([float(v) for v, _ in pairs])
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
        return 0.0 if sxx <= 0 or syy <= 0 else sxy * sxy / (sxx * syy)
    classes = [_key(y) for _, y in pairs]
    if numeric:
        return _eta_squared(_ranks([float(v) for v, _ in pairs]), classes)
    cats = [_key(v) for v, _ in pairs]
    table: dict[tuple[str, str], int] = {}
    for c, y in zip(cats, classes, strict=True):
        table[(c, y)] = table.get((c, y), 0) + 1
    rows_n = {c: cats.count(c) for c in set(cats)}
    cols_n = {y: classes.count(y) for y in set(classes)}
    k = min(len(rows_n), len(cols_n)) - 1
    if k <= 0:
        return 0.0
    n = len(pairs)
    chi2 = sum(
        (table.get((c, y), 0) - rows_n[c] * cols_n[y] / n) ** 2 / (rows_n[c] * cols_n[y] / n)
        for c in rows_n
        for y in cols_n
    )
    return min(1.0, chi2 / (n * k))


def select_columns(
    order: list[str], rows: list[dict[str, Any]], labels: list[Any], *, regression: bool, keep: int
) -> list[str]:
    """The ``keep`` columns of ``order`` most relevant to the labels on ``rows`` (:func:`relevance`),
    in ``order``'s order; ties keep the earlier column. Without rows, the first ``keep``."""
    if not rows:
        return order[:keep]
    scores = {c: relevance([r.get(c) for r in rows], labels, regression=regression) for c in order}
    best = sorted(order, key=lambda c: (-scores[c], order.index(c)))[:keep]
    chosen = set(best)
    return [c for c in order if c in chosen]


def serialize_episode(task: Task, *, loss_on: Literal["all", "queries"] = "all") -> tuple[str, list[int]]:
    """A table task as the compact text a model trains on, and a per-character loss mask.

    The symbols are fitted on the demonstrations only (as at inference); the queries follow them
    with their labels. The mask is 1 on the label symbols and their newlines: of every line with
    ``loss_on="all"`` (predictions after 0, 1, 2, ... demonstrations in one episode), else of the
    queries only.
    """
    codec = TableCodec.fit(
        [e.input for e in task.train],
        [e.output for e in task.train],
        regression=task.function.target_type == "regression",
        columns=list(task.test[0].input) if task.test else None,
    )
    text, mask = "", []
    lines = [(e.input, e.output, loss_on == "all") for e in task.train]
    lines += [(q.input, q.target, True) for q in task.test]
    for row, label, trained in lines:
        head = codec.encode_query(row)
        tail = codec.encode_label(label) + END
        text += head + tail
        mask += [0] * len(head) + [int(trained)] * len(tail)
    return text, mask


def encode_table(
    demos: list[tuple[dict[str, Any], Any]], query: dict[str, Any], *, regression: bool = False
) -> tuple[str, TableCodec]:
    """The compact prompt of a table (demonstrations, then the open query) and its codec."""
    codec = TableCodec.fit(
        [r for r, _ in demos], [y for _, y in demos], regression=regression, columns=list(query)
    )
    text = "".join(codec.encode_pair(r, y) for r, y in demos) + codec.encode_query(query)
    return text, codec
