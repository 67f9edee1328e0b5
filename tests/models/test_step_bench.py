"""The training-step benchmark runs every variant and prints ratios to its baseline."""

from __future__ import annotations

from models.step_bench import Variant, main, seconds_per_step


def test_a_variant_trains_and_is_timed() -> None:
    assert seconds_per_step(Variant(dense=True, bf16=True, layers=1), steps=1, hidden=32, threads=1) > 0


def test_the_table_has_every_variant_against_the_baseline(capsys) -> None:
    assert main(["--steps", "1", "--hidden", "32", "--layers", "1", "--grown", "2", "--no-text"]) == 0
    out = capsys.readouterr().out
    assert out.count("dense row sums") == 1 and out.count("embedding bag") == 4
    assert out.count("2 blocks") == 2 and "bf16" in out and out.count("baseline") == 1
    assert out.count("faster") + out.count("slower") == 4


def test_a_bad_count_is_one_line(capsys) -> None:
    import pytest

    with pytest.raises(SystemExit) as stop:
        main(["--steps", "0"])
    assert stop.value.code == 2 and "--steps 0: expected at least 1" in capsys.readouterr().err


def test_the_text_model_is_timed_in_both_precisions() -> None:
    from models.step_bench import text_seconds_per_step

    assert text_seconds_per_step(bf16=True, steps=1, threads=1, start=0) > 0
