"""The one model interface every node uses.

A backend turns a :class:`RenderedPrompt` into samples. Prompts are *rendered* per backend
from the same parts (:class:`PromptParts`) by the backend's :attr:`ModelBackend.renderer`:
chat models get role-play messages from ``prompts/``, the embedded model gets its compact
serialization. Nodes do::

    rendered = model.renderer.render(parts)
    gen = model.generate(rendered, n=4, temperature=0.7)
    answers = [model.renderer.parse(s.text, parts.kind, parts) for s in gen.samples]

``parse`` and ``format_value`` take the prompt's parts where a renderer's symbols depend on them
(the compact table format fits its symbols on the demonstrations); others ignore them.

Capabilities say what a backend can do beyond ``generate``: ``score`` (log-likelihood of given
candidates), ``adapt`` (temporary LoRA adapters, used by test-time training) and whether
samples carry token log-probabilities.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, Field

from prompts.base import ChatMessage, PromptParts, RenderedPrompt, Renderer
from tasks.schema import TaskKind

# The prompt types belong to prompts/ (models render through prompts, never the reverse); they
# are re-exported here because every backend's signature speaks them.
__all__ = [
    "Capabilities",
    "CapabilityError",
    "ChatMessage",
    "Generation",
    "ModelBackend",
    "ModelConfigError",
    "ModelError",
    "PromptParts",
    "RenderedPrompt",
    "Renderer",
    "Sample",
    "Usage",
    "answer_key",
    "softmax",
]


class ModelError(Exception):
    """A model call failed (server error, time-out, exhausted retries). One-line message."""


class ModelConfigError(ModelError):
    """The model is misconfigured by the user (unknown spec, missing key or path)."""


class CapabilityError(ModelError):
    """The backend cannot do what was asked (e.g. ``adapt`` on an OpenAI model)."""


class Usage(BaseModel):
    """Token and request accounting for one or more calls; add with ``+``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            requests=self.requests + other.requests,
            cost_usd=self.cost_usd + other.cost_usd,
        )


class Sample(BaseModel):
    """One generated sample."""

    text: str
    logprob: float | None = Field(default=None, description="Sum of token log-probabilities, if known.")
    token_logprobs: list[float] | None = Field(
        default=None, description="Per-token log-probabilities, if known."
    )


class Generation(BaseModel):
    """The result of one ``generate`` call."""

    samples: list[Sample]
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0


class Capabilities(BaseModel):
    """What a backend can do beyond generating text."""

    logprobs: bool = False
    score: bool = False
    adapt: bool = False


class ModelBackend(ABC):
    """Base class of model backends."""

    #: Human-readable spec, e.g. ``"embedded"``, ``"hf:/path"``, ``"openai:gpt-4o-mini"``.
    name: str = "model"
    capabilities: Capabilities = Capabilities()
    renderer: Renderer

    @abstractmethod
    def generate(
        self,
        prompt: RenderedPrompt,
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int | None = None,
        seed: int | None = None,
    ) -> Generation:
        """Sample ``n`` completions (greedy when ``temperature == 0``).

        Raises:
            ModelError: On a failed call, after the backend's retries, within its time-out.
        """

    def score(self, prompt: RenderedPrompt, candidates: list[str]) -> list[float]:
        """Log-likelihood of each candidate as the continuation of ``prompt``.

        Raises:
            CapabilityError: If the backend cannot score.
        """
        raise CapabilityError(f"model {self.name!r} cannot score candidates")

    def score_usage(self, prompt: RenderedPrompt, candidates: list[str]) -> Usage:
        """What :meth:`score` of ``candidates`` after ``prompt`` costs, counted as :meth:`generate`
        counts (the prompt once, the candidates' tokens as completion): one request where the
        backend cannot count tokens."""
        return Usage(requests=1)

    def for_kind(self, kind: TaskKind) -> ModelBackend:
        """The backend that answers tasks of ``kind``: this one, unless a specialist stands beside it.

        The embedded model hands tables to its table checkpoint (:mod:`models.table_model`);
        every other backend answers every kind itself.
        """
        return self

    @contextmanager
    def adapter(self, **lora: Any) -> Iterator[Any]:
        """Attach a fresh, temporary LoRA adapter; yield the trainable model; remove it on exit.

        The base weights are never modified. Test-time training fills in what is trained.

        Raises:
            CapabilityError: If the backend cannot adapt (remote models).
        """
        raise CapabilityError(f"model {self.name!r} cannot adapt (test-time training needs a local model)")
        yield  # pragma: no cover - makes this a generator


def answer_key(answer: Any) -> str:
    """A stable text key of a parsed answer, for grouping equal answers."""
    return json.dumps(answer, sort_keys=True, separators=(",", ":"), default=str)


def softmax(scores: list[float]) -> list[float]:
    """Log-scores normalised into probabilities that sum to one (numerically stable)."""
    top = max(scores)
    weights = [math.exp(x - top) for x in scores]
    total = sum(weights)
    return [w / total for w in weights]
