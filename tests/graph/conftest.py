"""Fixtures for graph tests: a scripted backend and tasks (``db``, on both backends, is in the root
conftest)."""

from __future__ import annotations

import time

import pytest

from graph.chaos.tiny import mirror_task
from models.base import Capabilities, Generation, ModelBackend, RenderedPrompt, Sample, Usage
from prompts.compact import CompactRenderer
from tasks.schema import Query, Task


class ScriptedBackend(ModelBackend):
    """A backend that answers from a script: the i-th sample of a call is ``script[i]``.

    A test double for the *model*, not for the graph: it records every prompt, so tests can check
    what the graph sent, and makes agreement and parse failures exact.
    """

    capabilities = Capabilities()

    def __init__(self, script: list[str], name: str = "scripted", logprob: float | None = -0.1) -> None:
        self.script = script
        self.name = name
        self.logprob = logprob  # every sample's log-probability; None: a backend that gives none
        self.renderer = CompactRenderer()
        self.prompts: list[RenderedPrompt] = []
        self.calls: list[tuple[int, float]] = []
        self._next = 0

    def generate(
        self,
        prompt: RenderedPrompt,
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int | None = None,
        seed: int | None = None,
    ) -> Generation:
        started = time.perf_counter()
        self.prompts.append(prompt)
        self.calls.append((n, temperature))
        texts = self.answer(prompt, n)
        return Generation(
            samples=[Sample(text=t, logprob=self.logprob) for t in texts],
            usage=Usage(
                prompt_tokens=len(prompt.text or "") * n, completion_tokens=sum(map(len, texts)), requests=1
            ),
            seconds=time.perf_counter() - started,
        )

    def answer(self, prompt: RenderedPrompt, n: int) -> list[str]:
        """The texts of one call's ``n`` samples: the script's next ones (subclasses may read
        the prompt instead)."""
        texts = [self.script[(self._next + i) % len(self.script)] for i in range(n)]
        self._next += n
        return texts


def reverse_task(task_id: str = "reverse") -> Task:
    """A 1-D task: mirror the row (the chaos suite's task, of type ``toy``, with a note and a
    second query that has no target)."""
    task = mirror_task(task_id)
    return task.model_copy(
        update={
            "type": "toy",
            "test": [*task.test, Query(input=[[1, 2, 3, 4]])],
            "notes": ["Colour 0 is background."],
        }
    )


@pytest.fixture
def task() -> Task:
    return reverse_task()
