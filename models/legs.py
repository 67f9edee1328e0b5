"""The command line every resumable training script shares: where the run is and how long a leg is.

``python -m models.train`` (the text model) and ``python -m models.train_table`` (the table model)
both train in legs: ``--out DIR`` starts a run, ``--resume DIR`` continues it, and a leg ends
after ``--minutes``, ``--steps`` or on SIGTERM, saving first. A leg holds its run folder
(:class:`LegLock`) from before it reads the run until after its last save.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any

try:  # POSIX; elsewhere legs run unlocked (logged)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: The lock file a leg holds in its run folder (git-ignored; the kernel frees it when the process
#: ends, SIGKILL included, so a file left behind never blocks the next leg).
LOCK_FILE = ".leg.lock"


class RunInUse(RuntimeError):
    """Another leg holds the run folder."""


class LegLock:
    """Exclusive hold of a run folder for one leg, taken at construction (``with`` releases it).

    Why: a second leg started on a run while the first still measures and saves (a SIGTERM'd leg
    saves, then measures for a minute or more) reads the run's plan before the first has written
    it and its state after, so it resumes a different schedule (seen: a re-warm restarted from the
    wrong step), and both then overwrite each other's checkpoint. ``flock`` on a file in the folder
    refuses the second leg at once, naming the holder's pid.
    """

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / LOCK_FILE
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover - Windows
            logger.warning("no file locks on this platform: %s is not held against a second leg", out)
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "unknown"
            self.release()
            raise RunInUse(
                f"{out}: another training leg (pid {holder}) holds this run; wait until it ends "
                "(a stopped leg saves and measures first) or stop it"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        """Let the run go (closing the file frees the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LegLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def hold_run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> LegLock:
    """The run folder of ``args`` (``--resume`` or ``--out``) held for this leg; where another leg
    holds it, exit 2 with one line naming the flag, the folder and the holder."""
    try:
        return LegLock(args.resume or args.out)
    except RunInUse as err:
        parser.exit(2, f"error: --{'resume' if args.resume else 'out'} {err}\n")


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
