"""The router's decisions on constructed evidence."""

from __future__ import annotations

import pytest

from graph.errors import SettingsError
from graph.router import check_strategy, decide, next_node


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


def test_ttt_when_asked_and_the_backend_can_adapt():
    d = decide(requested="ttt", evidence={"demos": 3, "can_adapt": True, "model": "embedded"})
    assert d["strategy"] == "ttt" and "3 leave-one-out episodes" in d["reason"]


def test_ttt_falls_back_to_icl_without_enough_demonstrations():
    d = decide(requested="ttt", evidence={"demos": 1, "can_adapt": True, "model": "embedded"})
    assert d["strategy"] == "icl" and "fell back to ICL" in d["reason"]


def test_ttt_on_a_backend_that_cannot_adapt_is_refused_in_one_line():
    with pytest.raises(SettingsError) as err:
        decide(requested="ttt", evidence={"demos": 3, "can_adapt": False, "model": "openai:gpt-4o"})
    assert "openai:gpt-4o" in str(err.value) and "cannot adapt" in str(err.value)
    assert "\n" not in str(err.value)
    check_strategy("icl", can_adapt=False, model="openai:gpt-4o")  # ICL needs nothing special
    assert next_node({"decision": {"strategy": "ttt", "reason": "", "evidence": {}}}) == "ttt"
