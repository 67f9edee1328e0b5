"""The compact serialization: encode -> decode is the identity for every kind it supports."""

from __future__ import annotations

import pytest

from models.base import PromptParts
from prompts.compact import INDEX_CHARS, CompactRenderer, decode_value, encode_value

CASES = [
    ("grid", [[0, 3, 3, 0, 9]]),
    ("grid", [[1, 2], [3, 4], [0, 0]]),
    ("grid", [[5] * 60]),  # longer than the index alphabet: indices wrap, colours survive
    ("list", [3, 1, 2]),
    ("list", ["a", 2.5, True]),
    ("text", "the answer is (B)"),
]


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize(("kind", "value"), CASES)
def test_round_trip(kind, value, indexed):
    text = encode_value(value, kind, indexed) + "\n"
    assert decode_value(text, kind, indexed) == value


def test_indexed_cells_carry_their_index():
    assert encode_value([[0, 3], [7, 7]], "grid", True) == "a0b3/a7b7"
    assert "I" not in INDEX_CHARS and "O" not in INDEX_CHARS


@pytest.mark.parametrize("indexed", [False, True])
def test_render_and_parse_outputs_of_another_length(indexed):
    """Output length may differ from the input's (scaling rules): the format does not assume it."""
    renderer = CompactRenderer(indexed=indexed)
    parts = PromptParts(
        kind="grid",
        function={"name": "f", "signature": "f(g)"},
        demos=[{"input": [[1, 0]], "output": [[1, 1, 0, 0]]}],
        query=[[0, 2]],
    )
    prompt = renderer.render(parts)
    assert prompt.text.endswith("O") and prompt.stop == ["\n"]
    answer = renderer.format_value([[0, 0, 2, 2]], "grid")
    assert renderer.parse(answer, "grid") == [[0, 0, 2, 2]]
    assert prompt.max_new_tokens >= len(answer)


@pytest.mark.parametrize("bad", ["", "12/3", "ab", "1x2"])
def test_unparseable_grids_are_none(bad):
    assert decode_value(bad + "\n", "grid") is None
