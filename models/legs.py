"""The command line every resumable training script shares: where the run is and how long a leg is.

``python -m models.train`` (the text model) and ``python -m models.train_table`` (the table model)
both train in legs: ``--out DIR`` starts a run, ``--resume DIR`` continues it, and a leg ends
after ``--minutes``, ``--steps`` or on SIGTERM, saving first.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def leg_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the options of a training leg; each script adds its own after these."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="checkpoint folder of a new run")
    where.add_argument("--resume", type=Path, help="continue the run in this checkpoint folder")
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="this leg's wall-clock budget (default 60)"
    )
    parser.add_argument(
        "--steps", type=int, default=0, help="end this leg after this many steps (0: no limit)"
    )
    parser.add_argument("--total-steps", type=int, help="the schedule's length (raise it to extend a run)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    parser.add_argument("--save-minutes", type=float, help="save and measure this often (default 10)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 6 steps (for tests)")
    return parser


def next_leg(ledger: list[dict[str, Any]]) -> int:
    """The number of the next leg: one past the highest in the ledger, so a leg that was run and
    left out (not shipped, noted in a later entry) keeps its number."""
    return max((int(entry.get("leg", 0)) for entry in ledger), default=0) + 1
