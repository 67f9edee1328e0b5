"""What a prompt is made of and what a backend consumes: the types every renderer and backend share.

:class:`PromptParts` are independent of any backend; a :class:`Renderer` (``prompts.chat`` for
chat models, ``prompts.compact`` for the embedded model) turns them into a :class:`RenderedPrompt`
and parses answers back. They live here, below ``models/``, because backends render through
``prompts/`` and never the reverse.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from tasks.schema import Example, MockFunction, TaskKind


class PromptParts(BaseModel):
    """Everything a prompt is made of, independent of any backend."""

    model_config = ConfigDict(extra="forbid")

    kind: TaskKind
    function: MockFunction
    notes: list[str] = Field(default_factory=list)
    demos: list[Example] = Field(default_factory=list)
    query: Any


class ChatMessage(BaseModel):
    """One chat message (OpenAI roles)."""

    role: str
    content: str


class RenderedPrompt(BaseModel):
    """A prompt in the form a backend consumes: chat ``messages`` or raw ``text``.

    ``stop`` lists strings that end a completion (the compact format ends an answer at a newline).
    """

    messages: list[ChatMessage] | None = None
    text: str | None = None
    stop: list[str] = Field(default_factory=list)
    max_new_tokens: int = 256
    ordinal: list[str] = Field(default_factory=list)
    """Symbols that stand for ordered values, in order (a regression label's digits). Where set,
    greedy decoding answers the *median* of the model's distribution over them, not its mode: the
    answer with the least expected absolute error (backends that cannot see the distribution
    answer greedily)."""


class Renderer(Protocol):
    """Renders :class:`PromptParts` for one family of backends and parses answers back."""

    name: str

    def render(self, parts: PromptParts) -> RenderedPrompt:
        """Build the prompt."""
        ...

    def parse(self, text: str, kind: TaskKind, parts: PromptParts | None = None) -> Any | None:
        """Parse a completion into a value of ``kind``; ``None`` when it cannot be parsed.

        ``parts`` are the parts the prompt was rendered from (needed where symbols depend on them).
        """
        ...

    def format_value(self, value: Any, kind: TaskKind, parts: PromptParts | None = None) -> str:
        """Write a value the way this renderer expects answers (used for scoring candidates)."""
        ...
