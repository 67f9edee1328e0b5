"""Per-run knobs: defaults, environment fallback, validation."""

from __future__ import annotations

import pytest

from graph.context import Context
from graph.errors import SettingsError


def test_defaults(monkeypatch):
    for name in ["MODEL", "SAMPLES", "STRATEGY", "TEMPERATURE"]:
        monkeypatch.delenv(f"MOCKINGBIRD_{name}", raising=False)
    ctx = Context()
    assert (ctx.model, ctx.samples, ctx.strategy) == ("embedded", 4, "auto")


def test_environment_fills_defaults_but_explicit_values_win(monkeypatch):
    monkeypatch.setenv("MOCKINGBIRD_SAMPLES", "7")
    monkeypatch.setenv("MOCKINGBIRD_MODEL", "openai:gpt-4o-mini")
    assert Context().samples == 7
    assert Context(samples=2).samples == 2
    assert Context().model == "openai:gpt-4o-mini"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("MOCKINGBIRD_SAMPLES", "many", "MOCKINGBIRD_SAMPLES: expected an integer, got 'many'"),
        ("MOCKINGBIRD_STRATEGY", "magic", "strategy: unknown strategy 'magic'"),
        ("MOCKINGBIRD_SAMPLES", "0", "samples: must be at least 1"),
        ("MOCKINGBIRD_TIMEOUT_S", "-1", "timeout_s: must be positive"),
    ],
)
def test_bad_values_are_one_line_errors(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as err:
        Context()
    assert message in str(err.value) and "\n" not in str(err.value)
