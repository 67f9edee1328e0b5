"""Per-run knobs: defaults, flags > environment > .env > defaults, validation in one line."""

from __future__ import annotations

import argparse

import pytest

from graph.cli_common import add_context_flags, context_from_args
from graph.context import Context
from graph.errors import SettingsError


def test_defaults():
    ctx = Context()
    assert (ctx.model, ctx.samples, ctx.strategy) == ("embedded", 4, "auto")


def test_environment_fills_defaults_but_explicit_values_win(monkeypatch):
    monkeypatch.setenv("MOCKINGBIRD_SAMPLES", "7")
    monkeypatch.setenv("MOCKINGBIRD_MODEL", "openai:gpt-4o-mini")
    monkeypatch.setenv("MOCKINGBIRD_STRATEGY", "ttt")
    assert Context().samples == 7
    assert Context(samples=2).samples == 2
    assert Context().model == "openai:gpt-4o-mini"
    # an explicit value equal to the default still wins (it used to be taken as "not given")
    assert Context(strategy="auto", samples=4).strategy == "auto"
    assert Context(strategy="auto", samples=4).samples == 4


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_context_flags(parser)
    return parser.parse_args(list(argv))


def test_flags_win_over_the_environment_even_at_their_defaults(monkeypatch):
    monkeypatch.setenv("MOCKINGBIRD_STRATEGY", "ttt")
    monkeypatch.setenv("MOCKINGBIRD_SAMPLES", "1")
    monkeypatch.setenv("MOCKINGBIRD_TTT_AUGMENT", "false")
    monkeypatch.setenv("MOCKINGBIRD_TIMEOUT_S", "5")
    ctx = context_from_args(parse("--strategy", "auto", "--samples", "4", "--ttt-augment"))
    assert (ctx.strategy, ctx.samples, ctx.ttt_augment) == ("auto", 4, True)
    assert ctx.timeout_s == 5.0  # not given: the environment
    # graph.bench --strategy all: the router's row is built with strategy="auto" explicitly
    assert context_from_args(parse(), strategy="auto").strategy == "auto"
    assert context_from_args(parse(), strategy=None).strategy == "ttt"  # None = not given


def test_every_setting_has_a_flag_and_old_flag_names_still_work():
    args = parse("--timeout", "3", "--budget", "2", "--max-demos", "1", "--no-ttt-early-stop")
    ctx = context_from_args(args)
    assert (ctx.timeout_s, ctx.budget_s, ctx.max_demos, ctx.ttt_early_stop) == (3.0, 2.0, 1, False)
    assert set(vars(parse())) >= set(Context.model_fields)


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("MOCKINGBIRD_SAMPLES", "many", "MOCKINGBIRD_SAMPLES: expected an integer, got 'many'"),
        ("MOCKINGBIRD_TTT_AUGMENT", "maybe", "MOCKINGBIRD_TTT_AUGMENT: expected true or false, got 'maybe'"),
        ("MOCKINGBIRD_STRATEGY", "magic", "strategy: unknown strategy 'magic'"),
        ("MOCKINGBIRD_SAMPLES", "0", "samples: must be at least 1, got 0 (from MOCKINGBIRD_SAMPLES)"),
        ("MOCKINGBIRD_TIMEOUT_S", "-1", "timeout_s: must be positive"),
    ],
)
def test_bad_values_are_one_line_errors(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as err:
        Context()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_bad_explicit_value_names_the_setting():
    with pytest.raises(SettingsError, match=r"^samples: expected an integer, got 'x'$"):
        Context(samples="x")
    with pytest.raises(SettingsError, match=r"^samples: must be at least 1, got 0$"):
        Context(samples=0)
