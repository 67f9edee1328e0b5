"""The one learning-rate schedule of pre-training and test-time training.

Linear warm-up to the peak, constant until ``decay_start``, then a linear or cosine decay to
``floor`` x peak at ``total``::

    models.train        Schedule(peak=lr, warmup=300, total=30_000, decay_start=25_500, floor=0.1)
    models.train_table  the same shape, ``decay_start`` a whole step
    models.ttt          Schedule(warmup=steps // 10, total=steps, decay_start=warmup, decay="cosine")

The warm-up value is ``peak * (step + 1) / warmup`` in that order: test-time training uses
``peak=1.0`` and scales the result by its own learning rate, which is how its rates were always
computed, so every caller's rates are bit-identical to the schedules this one replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A warm-up, a constant phase and a decay, over ``total`` optimisation steps."""

    total: int  # the schedule's length in steps
    warmup: int  # linear warm-up steps (step s runs at (s + 1) / warmup of the peak)
    decay_start: float  # the step where the decay begins (== warmup: no constant phase)
    decay: Literal["linear", "cosine"] = "linear"  # the decay's shape
    floor: float = 0.0  # share of the peak reached at ``total``
    peak: float = 1.0  # the peak learning rate (1.0: the schedule is a multiplier)
    rewarm_at: int = 0  # a run extended after its decay, or warm-started: a second warm-up from here


def lr_at(step: int, schedule: Schedule) -> float:
    """The learning rate of 0-based ``step`` under ``schedule`` (the floor after ``total``); from
    ``rewarm_at`` on, scaled by a second linear warm-up over ``warmup`` steps (extending a
    decayed run, a 10x jump of the rate in one step would undo the decay's gain; a warm start's
    fresh Adam moments make full-size first steps)."""
    rate = _base_rate(step, schedule)
    if 0 < schedule.rewarm_at <= step < schedule.rewarm_at + schedule.warmup:
        rate *= (step - schedule.rewarm_at + 1) / schedule.warmup
    return rate


class PretrainingConfig(Protocol):
    """What :func:`pretraining` reads of a trainer's config (both trainers' dataclasses have it)."""

    lr: float
    warmup_steps: int
    total_steps: int
    decay_frac: float
    rewarm_at: int


def pretraining(cfg: PretrainingConfig, *, whole_step: bool = False) -> Schedule:
    """The pre-training plan of both trainers: warm-up, constant, then a linear decay to 10 % of
    ``cfg.lr`` over the last ``decay_frac`` of ``total_steps`` (from a whole step with
    ``whole_step``, as the table trainer always had), re-warmed from ``rewarm_at``."""
    decay_start = cfg.total_steps * (1 - cfg.decay_frac)
    return Schedule(
        peak=cfg.lr,
        warmup=cfg.warmup_steps,
        total=cfg.total_steps,
        decay_start=int(decay_start) if whole_step else decay_start,
        floor=0.1,
        rewarm_at=cfg.rewarm_at,
    )


def needs_rewarm(now: float, before: float) -> bool:
    """Whether a resumed run's rate ``now`` jumps above twice the rate ``before`` it had at the same
    step under the plan it was saved with: a decayed run extended by a later ``total``."""
    return before > 0 and now > 2 * before


def _base_rate(step: int, schedule: Schedule) -> float:
    s = schedule
    if step < s.warmup:
        return s.peak * (step + 1) / s.warmup
    if step < s.decay_start:
        return s.peak
    elapsed, span = step - s.decay_start, max(1.0, s.total - s.decay_start)
    if s.decay == "cosine":
        cosine = 0.5 * (1 + math.cos(math.pi * min(elapsed, span) / span))
        return s.peak * (s.floor + (1 - s.floor) * cosine)
    return s.peak * (1 - (1 - s.floor) * min(1.0, elapsed / span))
