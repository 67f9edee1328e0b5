"""The ablation driver: every arm trains to the same budget, finished arms are read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.ablation import ARMS, Arm, arm_config, main, table


def test_arms_change_only_what_they_name():
    base = arm_config(ARMS[0], smoke=False, steps=3000)
    small = arm_config(next(a for a in ARMS if a.name == "small"), smoke=False, steps=3000)
    narrow = arm_config(next(a for a in ARMS if a.name == "narrow"), smoke=False, steps=3000)
    assert base.total_steps == small.total_steps == narrow.total_steps == 3000
    assert (small.model.hidden_size, small.model.num_layers, small.model.num_heads) == (128, 4, 4)
    assert small.compose_p == base.compose_p and base.compose_p[1] > 0
    assert narrow.compose_p == (0.0, 0.0) and narrow.model == base.model
    # the same data for every shape: batches depend on the seed and the step only
    assert (small.seed, small.batch_size, small.lengths) == (base.seed, base.batch_size, base.lengths)


def test_smoke_ablation_trains_every_arm_and_a_rerun_reads_them_back(tmp_path: Path, capsys):
    out = tmp_path / "abl"
    assert main(["--out", str(out), "--smoke", "--arms", "base,narrow"]) == 0
    printed = capsys.readouterr().out
    assert "| base |" in printed and "| narrow |" in printed
    report = json.loads((out / "ablation.json").read_text())
    assert [r["arm"] for r in report["rows"]] == ["base", "narrow"]
    assert all(r["steps"] == 6 and r["held_out"] is not None for r in report["rows"])
    legs = len(json.loads((out / "base" / "mockingbird.json").read_text())["ledger"])
    assert main(["--out", str(out), "--smoke", "--arms", "base"]) == 0  # finished: nothing trained
    assert len(json.loads((out / "base" / "mockingbird.json").read_text())["ledger"]) == legs


def test_unknown_arm_is_a_one_line_error(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--arms", "base,huge"])
    assert exit_info.value.code == 2
    assert "unknown arm(s) huge" in capsys.readouterr().err


def test_table_shows_percentages_and_params():
    arm = Arm(name="x", what="a change")
    text = table([{"arm": "x", "what": arm.what, "params": 1_230_000, "steps": 10, "tokens": 2_000_000,
                   "cpu_hours": 0.5, "held_out": 0.25, "held_in": None, "arc": 0.5,
                   "loss_by_demos": {"3": 0.1234}}])  # fmt: skip
    assert "| x | a change | 1.23 M | 10 | 2.0 M | 0.5 | 25.0 % | - | 50.0 % | 0.123 |" in text
