"""Leave-one-out over a task's demonstrations: the one loop every held-out measurement uses.

The router's LOO-ICL accuracy (``route``), reflection's held-out accuracy (``reflect``) and
DG-DIFF (``select``) all predict each demonstration from the others. Held out means held out:
notes that correct the held-out demonstration itself are left out of its prompt, otherwise the
measurement is the model copying its own correction (after reflection every demonstration has
one, and LOO-ICL would read as perfect).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from prompts.compact import parse_correction
from tasks.schema import Example, Task


class HeldOut(NamedTuple):
    """One leave-one-out split: the held-out demonstration, the rest, and the notes it may see."""

    i: int
    demo: Example
    rest: Task
    notes: list[str]


def held_out_notes(notes: list[str], held_out: Any) -> list[str]:
    """``notes`` without corrections about ``held_out`` (its own answer must not be in its prompt)."""
    kept = []
    for note in notes:
        pair = parse_correction(note)
        if pair is None or pair[0] != held_out:
            kept.append(note)
    return kept


def leave_one_out(task: Task, notes: list[str], *, limit: int = 0) -> Iterator[HeldOut]:
    """Each demonstration (the first ``limit``; 0 = all) held out from the task and from ``notes``."""
    held = task.train[:limit] if limit else task.train
    for i, demo in enumerate(held):
        rest = task.model_copy(update={"train": task.train[:i] + task.train[i + 1 :]})
        yield HeldOut(i, demo, rest, held_out_notes(notes, demo.input))
