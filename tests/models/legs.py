"""What both training scripts promise about legs, checked one way for both (``models.legs``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models.train import STATE_FILE

#: One leg of a training script into a folder: ``leg(out, steps=..., resume=...)``, its ledger line.
Leg = Callable[..., dict[str, Any]]


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors of a state entry (a state dict or a list of tensors), in a fixed order."""
    return [value[k] for k in sorted(value)] if isinstance(value, dict) else list(value)


def assert_legs_bit_identical(leg: Leg, tmp_path: Path) -> list[dict[str, Any]]:
    """Six steps in one leg and in three (2 + 2 + the rest) end in the same weights, EMA and token
    count, with one ledger line per leg; returns the three-leg ledger for the script's own checks."""
    leg(tmp_path / "one")
    leg(tmp_path / "two", steps=2)
    leg(tmp_path / "two", resume=True, steps=2)
    leg(tmp_path / "two", resume=True)
    a = torch.load(tmp_path / "one" / STATE_FILE, weights_only=False)
    b = torch.load(tmp_path / "two" / STATE_FILE, weights_only=False)
    assert a["step"] == b["step"] == 6 and a["tokens"] == b["tokens"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(x, y) for x, y in zip(_tensors(a["ema"]), _tensors(b["ema"]), strict=True))
    ledger: list[dict[str, Any]] = json.loads((tmp_path / "two" / "mockingbird.json").read_text())["ledger"]
    assert [e["leg"] for e in ledger] == [1, 2, 3]
    assert [e["steps"] for e in ledger] == [2, 4, 6]
    assert sum(e["leg_tokens"] for e in ledger) == ledger[-1]["tokens"]
    return ledger


def assert_warm_start_without_state(leg: Leg, tmp_path: Path) -> dict[str, Any]:
    """A resumed leg whose optimizer state is gone (a fresh clone: the state stays out of git)
    starts from the saved weights and says so; returns its ledger line."""
    leg(tmp_path, steps=2)
    (tmp_path / STATE_FILE).unlink()
    entry = leg(tmp_path, resume=True, steps=1)
    assert entry["warm_start"] is True and entry["steps"] == 3
    return entry


def assert_a_held_run_refuses_a_second_leg(main: Callable[[list[str]], int], out: Path, capsys: Any) -> None:
    """While another leg holds the run ``out`` (a smoke run), ``main --resume out`` exits 2 with
    one line naming the flag, the folder and the holder, and leaves the run's files as they were;
    once the holder lets go, the same command trains."""
    import os

    import pytest

    from models.legs import LegLock

    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".leg.lock"}
    capsys.readouterr()  # what the run's first leg wrote
    with LegLock(out), pytest.raises(SystemExit) as stop:
        main(["--resume", str(out), "--steps", "1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --resume {out}: another training leg (pid {os.getpid()})"), err
    assert "\n" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".leg.lock"} == files
    assert main(["--resume", str(out), "--steps", "1"]) == 0
