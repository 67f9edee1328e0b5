"""The reliability suite: ``python -m graph.chaos``.

Each *family* breaks the system on purpose in one way, many times (seeded, bounded in time), and
counts the cases it **tried**, the ones it **survived** (the promised behaviour held: same answer
after a resume, one clear error line, a refused request...) and the ones it **lost** (with what
went wrong, so a lost case is a bug report):

- ``kill``: SIGKILL at random points of a run (inside nodes and model calls, inside test-time
  training, between steps) under each checkpoint durability; resumed by thread id in a fresh
  process, the final answer must equal an uninterrupted run's and no evidence may be counted twice.
- ``expert``: a run waiting for an expert is killed (while waiting, and while the reply is being
  applied), then resumed from a fresh process.
- ``llm``: a fault-injecting OpenAI-compatible server (429 with Retry-After, 500, reset
  connections, hangs, 400/401, insufficient quota, malformed JSON, empty choices): requests per
  logical call, the deadline, one clear line per failure.
- ``fuzz``: a corpus of broken task files: exit 2, one line, bounded memory.
- ``tamper``: tampered checkpoint bytes are refused under strict msgpack; user-supplied values
  never reach the checkpointer's ``list()`` filter.
- ``review``: the review page against forged ``Host`` headers, cross-origin POSTs, missing and
  wrong tokens, and tokens in logs.

Families that need processes run them as real children of a fork server with the heavy modules
preloaded (:mod:`graph.chaos.procs`), so a case costs a fork, not an interpreter start; models
are tiny ones built locally (:mod:`graph.chaos.tiny`); storage is real SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

#: Families in the order they run; each name maps to ``graph.chaos.<module>:run``.
FAMILIES: dict[str, str] = {
    "kill": "graph.chaos.kill:run_kill",
    "expert": "graph.chaos.kill:run_expert",
    "llm": "graph.chaos.llm:run",
    "fuzz": "graph.chaos.fuzz:run",
    "tamper": "graph.chaos.tamper:run",
    "review": "graph.chaos.review:run",
}
#: Share of the time budget each family gets (they differ in what one case costs).
WEIGHTS: dict[str, float] = {"kill": 5, "expert": 2, "llm": 2, "fuzz": 1, "tamper": 1, "review": 1}


class Case(BaseModel):
    """One tried case: what was done, whether it survived, and why not."""

    name: str
    survived: bool
    detail: str = ""
    seconds: float = 0.0


class FamilyReport(BaseModel):
    """What one family tried, survived and lost."""

    family: str
    seed: int
    budget_s: float
    seconds: float = 0.0
    cases: list[Case] = Field(default_factory=list)
    skipped: int = Field(0, description="Cases not started because the time budget ran out.")
    notes: list[str] = Field(default_factory=list, description="Measured facts worth showing.")

    @property
    def tried(self) -> int:
        return len(self.cases)

    @property
    def survived(self) -> int:
        return sum(1 for c in self.cases if c.survived)

    @property
    def lost(self) -> int:
        return self.tried - self.survived

    def summary(self) -> dict[str, Any]:
        """The report as JSON, with the counts."""
        return self.model_dump(mode="json") | {
            "tried": self.tried,
            "survived": self.survived,
            "lost": self.lost,
        }


@dataclass
class Budget:
    """A family's time budget: cases start only while time is left."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def allows(self, estimate_s: float = 0.0) -> bool:
        """Whether a case expected to take ``estimate_s`` still fits."""
        return self.left > estimate_s


@dataclass
class Recorder:
    """Collects a family's cases as they run (used by every family)."""

    report: FamilyReport
    budget: Budget
    on_case: Callable[[Case], None] | None = None

    @contextmanager
    def case(self, name: str) -> Iterator[dict[str, Any]]:
        """Time one case; the body sets ``out["ok"]`` and ``out["detail"]``.

        An exception escaping the body is a lost case, with the exception as its detail: a
        crash of the harness is never counted as survived.
        """
        started = time.monotonic()
        out: dict[str, Any] = {"ok": False, "detail": ""}
        try:
            yield out
        except Exception as exc:  # a crash is a lost case, reported, not a crash of the suite
            out["ok"], out["detail"] = False, f"harness error: {type(exc).__name__}: {exc}"
        case = Case(
            name=name,
            survived=bool(out["ok"]),
            detail=" ".join(str(out["detail"]).split())[:500],
            seconds=round(time.monotonic() - started, 3),
        )
        self.report.cases.append(case)
        if self.on_case:
            self.on_case(case)


@dataclass
class Env:
    """What every family gets: a work folder, the seed and its time budget."""

    workdir: Path
    seed: int
    budget_s: float
    quick: bool = False
    on_case: Callable[[Case], None] | None = None

    def recorder(self, family: str) -> Recorder:
        budget = Budget(self.budget_s)
        report = FamilyReport(family=family, seed=self.seed, budget_s=self.budget_s, skipped=0)
        return Recorder(report, budget, self.on_case)
