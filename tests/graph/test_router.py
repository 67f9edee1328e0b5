"""The router's decisions on constructed evidence."""

from __future__ import annotations

import pytest

from graph.router import decide, next_node


def test_auto_chooses_icl_and_quotes_the_numbers():
    d = decide(requested="auto", evidence={"demos": 3, "outcomes": {"n": 4, "correct": 1}})
    assert d["strategy"] == "icl"
    assert "3 demonstrations" in d["reason"] and "1/4" in d["reason"]
    assert d["evidence"]["demos"] == 3


def test_explicit_icl_says_it_was_asked():
    assert decide(requested="icl", evidence={"demos": 0})["reason"].startswith("asked for ICL")


def test_next_node_follows_the_decision():
    assert next_node({"decision": {"strategy": "icl", "reason": "", "evidence": {}}}) == "icl"
    with pytest.raises(ValueError, match="unknown strategy"):
        next_node({"decision": {"strategy": "nope", "reason": "", "evidence": {}}})
