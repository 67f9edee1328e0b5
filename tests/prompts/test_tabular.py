"""The compact table serialization: symbols fitted on demonstrations, round trips, prompt length."""

from __future__ import annotations

import math
import random

import pytest

from prompts.base import PromptParts
from prompts.compact import CompactRenderer
from prompts.tabular import (
    CLASS_SYMBOLS,
    MAX_FEATURES,
    MISSING,
    UNSEEN,
    Bins,
    TableCodec,
    encode_table,
    relevance,
    select_columns,
    serialize_episode,
)
from tasks.schema import Example, MockFunction
from tasks.tabular_prior import PriorConfig, sample_task

ROWS = [
    {"size": 1.0, "colour": "red", "n": 3, "flag": True},
    {"size": 2.5, "colour": "blue", "n": None, "flag": False},
    {"size": 4.0, "colour": None, "n": 7, "flag": True},
    {"size": 8.0, "colour": "red", "n": 1, "flag": False},
]
LABELS = ["cat", 2, "dog", "cat"]


def test_class_labels_round_trip_exactly_whatever_their_type():
    codec = TableCodec.fit(ROWS, LABELS)
    for label in LABELS:
        symbol = codec.encode_label(label)
        assert len(symbol) == 1 and symbol in CLASS_SYMBOLS and symbol not in "IO"
        decoded = codec.decode_label(symbol + "\n")
        assert decoded == label and type(decoded) is type(label)
    assert codec.encode_label("horse") == UNSEEN and codec.decode_label(UNSEEN) is None
    assert codec.decode_label("Z") is None and codec.decode_label("") is None


def test_symbols_do_not_depend_on_row_order():
    order = [2, 0, 3, 1]
    a = TableCodec.fit(ROWS, LABELS)
    b = TableCodec.fit([ROWS[i] for i in order], [LABELS[i] for i in order])
    assert [a.encode_label(v) for v in LABELS] == [b.encode_label(v) for v in LABELS]
    assert [a.encode_row(r) for r in ROWS] == [b.encode_row(r) for r in ROWS]


def test_rows_one_character_per_feature_and_decode_to_what_encodes_them():
    codec = TableCodec.fit(ROWS, LABELS)
    assert codec.columns == ["size", "colour", "n", "flag"]
    for row in ROWS:
        text = codec.encode_row(row)
        assert len(text) == 4
        decoded = codec.decode_row(text)
        lo, hi = decoded["size"]
        assert lo < row["size"] <= hi or (lo <= row["size"] < hi)
        assert decoded["colour"] == row["colour"]  # categories round-trip; missing decodes to None
        assert decoded["flag"] == row["flag"]
        if row["n"] is None:
            assert text[2] == MISSING and decoded["n"] is None
    # numeric digits follow the ranks: lowest demonstration 0-ish, highest 9-ish
    digits = [int(codec.encode_row(r)[0]) for r in ROWS]
    assert digits == sorted(digits) and digits[0] <= 2 and digits[-1] >= 7
    # an unseen category and values outside the demonstrations' range
    assert codec.encode_row({"size": -100.0, "colour": "green", "n": 99, "flag": None}) == (
        f"{digits[0]}{UNSEEN}{codec.encode_row(ROWS[2])[2]}{MISSING}"
    )


def test_bins_are_quantiles_and_intervals_cover_every_value():
    rng = random.Random(0)
    values = [rng.gauss(0, 1) for _ in range(16)]
    bins = Bins.fit(values)
    digits = [bins.digit(v) for v in values]
    assert len(set(digits)) >= 8  # 16 distinct values spread over the deciles
    for v, d in zip(values, digits, strict=True):
        assert d is not None
        lo, hi = bins.interval(d)  # type: ignore[misc]
        assert lo <= v <= hi
    assert Bins.fit([5.0, 5.0, 5.0]).digit(123.0) == Bins.fit([5.0]).digit(-1.0)  # a constant: one digit
    assert Bins().digit(1.0) is None


def test_regression_labels_decode_to_the_mean_of_their_bin():
    values = [10.0, 11.0, 20.0, 21.0, 30.0, 31.0, 40.0, 41.0, 50.0, 51.0]
    codec = TableCodec.fit([{"x": v} for v in values], values, regression=True)
    for v in values:
        decoded = codec.decode_label(codec.encode_label(v))
        assert decoded is not None and abs(decoded - v) <= 0.5 + 1e-9
    # an unused digit interpolates between its used neighbours, ends clamp
    used = sorted(codec.target_means)
    assert codec.decode_label("0") == codec.target_means[used[0]]
    assert codec.decode_label("x") is None and codec.encode_label("n/a") == UNSEEN
    with pytest.raises(ValueError, match="must be numbers"):
        TableCodec.fit([{"x": 1}], ["a"], regression=True)


def test_sixteen_demonstrations_of_thirty_features_fit_the_context():
    rng = random.Random(1)
    rows = [{f"f{j}": rng.random() for j in range(30)} for _ in range(17)]
    text, _ = encode_table([(r, rng.choice("abc")) for r in rows[:16]], rows[16])
    assert len(text) == 16 * 34 + 32 < 1024
    assert text.count("\n") == 16 and text.endswith("O")


def test_relevance_scores_what_tells_the_label_apart_in_every_kind():
    labels = ["a"] * 5 + ["b"] * 5
    assert relevance([1, 2, 3, 4, 5, 11, 12, 13, 14, 15], labels, regression=False) > 0.7
    assert relevance([1, 12, 3, 14, 5, 11, 2, 13, 4, 15], labels, regression=False) < 0.1
    assert relevance(["x"] * 5 + ["y"] * 5, labels, regression=False) == pytest.approx(1.0)
    assert relevance(["x", "y"] * 5, labels, regression=False) < 0.1
    ys = [float(i) for i in range(10)]
    assert relevance([i**3 for i in range(10)], ys, regression=True) == pytest.approx(1.0)  # ranks
    assert relevance(["lo"] * 5 + ["hi"] * 5, ys, regression=True) > 0.7
    assert relevance([3.0] * 10, labels, regression=False) == 0.0  # constant
    assert relevance([None, None, 1, 2], ["a", "b", "a", "b"], regression=False) == 0.0  # two rows
    # nan is missing: the three rows left (1 a, 2 b, 3 b) split their rank variance 3 to 1
    assert relevance([math.nan, 1.0, 2.0, 3.0], ["b", "a", "b", "b"], regression=False) == 0.75
    assert relevance([1.0, 2.0, 3.0, 4.0], [1.0, "x", 3.0, 4.0], regression=True) == 1.0


def test_wide_tables_keep_their_most_relevant_columns_chosen_on_the_demonstrations():
    rng = random.Random(0)
    width = MAX_FEATURES + 10
    labels = [rng.choice("ab") for _ in range(16)]
    informative = {"f3", "f17", "f38"}
    rows = [
        {f"f{j}": (float(y == "a") + rng.random() / 10 if f"f{j}" in informative else rng.random())
         for j in range(width)}
        for y in labels
    ]  # fmt: skip
    codec = TableCodec.fit(rows, labels)
    assert len(codec.columns) == MAX_FEATURES and informative <= set(codec.columns)
    assert codec.columns == sorted(codec.columns, key=lambda c: int(c[1:]))  # the table's order
    text, _ = encode_table(list(zip(rows, labels, strict=True)), rows[0])
    assert len(text.splitlines()[0]) == MAX_FEATURES + 3  # I, the cells, O, the label
    narrow = TableCodec.fit([{k: r[k] for k in list(r)[:5]} for r in rows], labels)
    assert narrow.columns == ["f0", "f1", "f2", "f3", "f4"]  # narrow tables keep every column
    assert select_columns(["a", "b", "c"], [], [], regression=False, keep=2) == ["a", "b"]


def _parts(regression: bool = False) -> PromptParts:
    labels = [1.5, 2.5, 9.0, 4.0] if regression else LABELS
    return PromptParts(
        kind="tabular",
        function=MockFunction(
            name="f", signature="f()", target_type="regression" if regression else "classification"
        ),
        demos=[Example(input=r, output=y) for r, y in zip(ROWS, labels, strict=True)],
        query={"size": 3.0, "colour": "blue", "n": 2, "flag": True},
    )


def test_the_compact_renderer_writes_tables_and_reads_labels_back():
    renderer = CompactRenderer()
    parts = _parts()
    prompt = renderer.render(parts)
    lines = (prompt.text or "").split("\n")
    assert len(lines) == 5 and all(line.startswith("I") for line in lines)
    assert all(len(line) == 1 + 4 + 1 + 1 for line in lines[:4]) and lines[4].endswith("O")
    assert prompt.stop == ["\n"] and prompt.max_new_tokens == 2
    for label in LABELS:
        written = renderer.format_value(label, "tabular", parts)
        assert written.endswith("\n") and len(written) == 2
        assert renderer.parse(written, "tabular", parts) == label
    reg = _parts(regression=True)
    assert renderer.parse(renderer.format_value(9.0, "tabular", reg), "tabular", reg) == 9.0
    assert isinstance(renderer.parse("3\n", "tabular", reg), float)


def test_corrections_are_demonstrations_in_the_table_format():
    from prompts.compact import correction_note

    parts = _parts()
    query = {"size": 5.0, "colour": "green", "n": 1, "flag": False}
    fixed = parts.model_copy(update={"notes": [correction_note(query, "bird", "cat")]})
    text = CompactRenderer().render(fixed).text or ""
    assert text.count("\n") == 5  # four demonstrations and the correction
    assert (
        CompactRenderer().parse(CompactRenderer().format_value("bird", "tabular", fixed), "tabular", fixed)
        == "bird"
    )


def test_nan_is_missing():
    codec = TableCodec.fit([{"x": 1.0}, {"x": 2.0}], ["a", "b"])
    assert codec.encode_row({"x": math.nan}) == MISSING


def test_episodes_are_in_the_compact_format_with_the_loss_on_labels():
    cfg = PriorConfig()
    for i in range(40):
        task = sample_task(1, i, cfg)
        text, mask = serialize_episode(task)
        assert len(text) == len(mask) <= cfg.max_chars
        lines = text.split("\n")[:-1]
        assert len(lines) == len(task.train) + len(task.test)
        codec = TableCodec.fit(
            [e.input for e in task.train],
            [e.output for e in task.train],
            regression=task.function.target_type == "regression",
        )
        pos = 0
        for line, (row, label) in zip(
            lines,
            [(e.input, e.output) for e in task.train] + [(q.input, q.target) for q in task.test],
            strict=True,
        ):
            assert line == codec.encode_query(row) + codec.encode_label(label)
            # the loss is on the label symbol and the newline only
            assert mask[pos : pos + len(line) + 1] == [0] * (len(line) - 1) + [1, 1]
            pos += len(line) + 1
        # classification queries have a class the demonstrations show
        if task.function.target_type == "classification":
            assert codec.encode_label(task.test[0].target) != "?"
    _, query_only = serialize_episode(sample_task(1, 0, cfg), loss_on="queries")
    assert sum(query_only) == 2 * cfg.queries
