"""The shared learning-rate schedule gives, bit for bit, the rates of the schedules it replaced."""

from __future__ import annotations

import math

import pytest

from models.schedule import Schedule, lr_at
from models.train import TrainConfig
from models.train import lr_at as train_lr_at
from models.train_table import TableTrainConfig
from models.train_table import lr_at as table_lr_at
from models.ttt import TTTConfig
from models.ttt.loop import lr_schedule

SHAPES = [
    (100, 10, 0.2),
    (6, 2, 0.15),
    (30_000, 300, 0.15),
    (45_000, 200, 0.15),
    (1234, 7, 0.33),
    (7, 3, 0.5),
]


def old_train(step: int, lr: float, warmup: int, total: int, frac: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_start = total * (1 - frac)
    if step < decay_start:
        return lr
    done = min(1.0, (step - decay_start) / max(1.0, total - decay_start))
    return lr * (1 - 0.9 * done)


def old_table(step: int, lr: float, warmup: int, total: int, frac: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_start = int(total * (1 - frac))
    if step < decay_start:
        return lr
    frac = min(1.0, (step - decay_start) / max(1, total - decay_start))
    return lr * (1 - 0.9 * frac)


def old_ttt(step: int, lr: float, steps: int) -> float:
    warmup = max(1, steps // 10)
    scale = (
        (step + 1) / warmup
        if step < warmup
        else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
    )
    return lr * scale


@pytest.mark.parametrize(("total", "warmup", "frac"), SHAPES)
def test_pretraining_schedules_are_unchanged(total, warmup, frac):
    train = TrainConfig(lr=1.5e-3, warmup_steps=warmup, total_steps=total, decay_frac=frac)
    table = TableTrainConfig(lr=1e-3, warmup_steps=warmup, total_steps=total, decay_frac=frac)
    steps = range(total + 3) if total < 2000 else [*range(0, total + 3, 7), *range(total - 200, total + 3)]
    for s in steps:
        assert train_lr_at(s, train) == old_train(s, 1.5e-3, warmup, total, frac), s
        assert table_lr_at(s, table) == old_table(s, 1e-3, warmup, total, frac), s


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 12, 30, 33, 40, 57, 100])
def test_ttt_schedule_is_unchanged(steps):
    for lr in (2e-3, 1e-3, 3e-4):
        cfg = TTTConfig(lr=lr, steps=steps)
        got = [cfg.lr * lr_at(s, lr_schedule(cfg)) for s in range(steps)]
        assert got == [old_ttt(s, lr, steps) for s in range(steps)]


def test_warm_up_constant_and_both_decays_reach_the_floor():
    linear = Schedule(peak=2.0, warmup=4, total=20, decay_start=10, floor=0.1)
    assert [lr_at(s, linear) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert lr_at(4, linear) == lr_at(9, linear) == 2.0
    assert lr_at(10, linear) == 2.0 > lr_at(15, linear) > lr_at(20, linear) == pytest.approx(0.2)
    assert lr_at(50, linear) == pytest.approx(0.2)
    cosine = Schedule(peak=2.0, warmup=2, total=12, decay_start=2, decay="cosine", floor=0.25)
    assert lr_at(2, cosine) == 2.0
    assert lr_at(7, cosine) == pytest.approx(0.5 + 1.5 * 0.5)  # half way down
    assert lr_at(12, cosine) == lr_at(99, cosine) == pytest.approx(0.5)


def test_a_rewarm_scales_the_rate_up_again_and_only_a_jump_asks_for_one():
    from models.schedule import needs_rewarm

    plan = Schedule(peak=1.0, warmup=4, total=100, decay_start=80, floor=0.1, rewarm_at=50)
    assert lr_at(49, plan) == 1.0
    assert [lr_at(s, plan) for s in range(50, 55)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert needs_rewarm(1.0, 0.1) and not needs_rewarm(1.0, 0.9) and not needs_rewarm(1.0, 0.0)


def test_the_pretraining_plan_starts_its_decay_where_each_trainer_always_had():
    from types import SimpleNamespace

    from models.schedule import pretraining

    cfg = SimpleNamespace(lr=1e-3, warmup_steps=300, total_steps=30_000, decay_frac=0.15, rewarm_at=0)
    text = pretraining(cfg)
    table = pretraining(SimpleNamespace(**{**vars(cfg), "total_steps": 6_001}), whole_step=True)
    assert text.decay_start == 30_000 * 0.85 and text.floor == 0.1
    assert table.decay_start == int(6_001 * 0.85) and isinstance(table.decay_start, int)
