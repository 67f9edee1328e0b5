"""ChatRenderer: the role-play prompt and the forgiving answer parser."""

from __future__ import annotations

import pytest

from models.base import PromptParts
from prompts.chat import ChatRenderer, encode_value, load_template
from tasks.schema import Example, MockFunction


def parts(**overrides) -> PromptParts:
    base = {
        "kind": "grid",
        "function": MockFunction(
            name="transform", signature="transform(grid: Grid) -> Grid", docstring="Moves {things} right."
        ),
        "notes": ["Colour 0 is the background."],
        "demos": [
            Example(input=[[0, 3, 0]], output=[[0, 0, 3]]),
            Example(input=[[5, 0, 0]], output=[[0, 5, 0]]),
        ],
        "query": [[7, 0, 0]],
    }
    base.update(overrides)
    return PromptParts(**base)


def test_render_has_roleplay_system_and_examples() -> None:
    rendered = ChatRenderer().render(parts())
    assert rendered.text is None and rendered.messages is not None
    system, user = rendered.messages
    assert (system.role, user.role) == ("system", "user")
    assert "You are the Python function `transform`" in system.content
    assert "`transform(grid: Grid) -> Grid`" in system.content
    assert "Moves {things} right." in system.content  # braces in a docstring survive
    assert "Output:" in system.content
    assert "Colour 0 is the background." in user.content
    assert "Input: [[0,3,0]]\nOutput: [[0,0,3]]" in user.content
    assert "Input: [[5,0,0]]\nOutput: [[0,5,0]]" in user.content
    assert user.content.endswith("Input: [[7,0,0]]\nOutput:")
    assert user.content.index("[[0,3,0]]") < user.content.index("[[5,0,0]]") < user.content.index("[[7,0,0]]")
    assert rendered.max_new_tokens >= 64


def test_render_without_notes_or_docstring() -> None:
    fn = MockFunction(name="f", signature="f(x: str) -> str")
    rendered = ChatRenderer().render(
        parts(kind="text", function=fn, notes=[], demos=[Example(input="a\nb", output="B")], query="c")
    )
    system, user = rendered.messages
    assert "docstring" not in system.content.lower()
    assert "Notes" not in user.content
    assert "Input: a b\nOutput: B" in user.content  # one value, one line


def test_templates_load() -> None:
    for name in ("roleplay_system", "roleplay_user", "roleplay_demo", "roleplay_notes", "roleplay_docstring"):
        assert load_template(name).template


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[0,0,3]]", [[0, 0, 3]]),
        ("Output: [[1, 2], [3, 4]]", [[1, 2], [3, 4]]),
        ("```json\n[[1,2],[3,4]]\n```", [[1, 2], [3, 4]]),
        ("Input: [[1]]\nOutput: [[2]]\nInput: [[3]]\nOutput: [[4]]", [[4]]),
        ("0 0 3 3", [[0, 0, 3, 3]]),
        ("[0,0,3]", [[0, 0, 3]]),
        ("Output:\n1 2\n3 4", [[1, 2], [3, 4]]),
        ("The answer is [[5,5]] as shown.", [[5, 5]]),
        ("Output: [[9]]\nOutput:", [[9]]),  # an empty last marker: take the last one that parses
    ],
)
def test_parse_grid(text: str, expected: list[list[int]]) -> None:
    assert ChatRenderer().parse(text, "grid") == expected


@pytest.mark.parametrize(
    "text",
    ["", "I don't know", "[[1,2],[3]]", "[[10]]", "[[1,'a']]", "[]", '{"a": 1}', "Output: ", "[[true]]"],
)
def test_parse_grid_rejects(text: str) -> None:
    assert ChatRenderer().parse(text, "grid") is None


def test_parse_list() -> None:
    r = ChatRenderer()
    assert r.parse('Output: [3, 1, "a"]', "list") == [3, 1, "a"]
    assert r.parse("1, 2, 3", "list") == [1, 2, 3]
    assert r.parse("[]", "list") == []
    assert r.parse("[[1]]", "list") is None  # nested: not a flat list
    assert r.parse("no list here", "list") is None


def test_parse_text_and_tabular() -> None:
    r = ChatRenderer()
    assert r.parse("\n  Hello World  \nmore", "text") == "Hello World"
    assert r.parse('Output: "quoted"', "text") == "quoted"
    assert r.parse("Output: yes", "tabular") == "yes"
    assert r.parse("   \n", "text") is None


def test_format_value_roundtrip() -> None:
    r = ChatRenderer()
    for value, kind in [([[0, 1], [2, 3]], "grid"), ([1, "b", None], "list"), ("some text", "text")]:
        written = r.format_value(value, kind)
        assert "\n" not in written
        assert r.parse(written, kind) == value
    assert r.format_value([[0, 1]], "grid") == "[[0,1]]"
    assert encode_value({"a": 1, "b": "x", "c": None}, "tabular") == "a=1, b='x', c=None"
    assert encode_value(True, "tabular") == "true"
