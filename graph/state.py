"""The graph's state: what comes in, what goes out, and what nodes share in between.

Everything here is JSON-friendly (dicts, lists, strings, numbers) so checkpoints round-trip
exactly through the strict msgpack serializer, and a parent graph can map keys explicitly.
Tasks travel as ``Task.model_dump()`` dicts; nodes validate them back into pydantic models.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired

# typing_extensions: pydantic (JSON Schema of the graph) needs it for TypedDict on Python < 3.12
from typing_extensions import TypedDict


class QueryIn(TypedDict, total=False):
    """One query: an input, and its expected output where known."""

    input: Any
    """The value to predict an output for (a grid, list, text or feature mapping)."""
    target: Any
    """The expected output, if known; used for scoring only, never shown to the model."""


class Candidate(TypedDict):
    """A distinct answer among the samples, with its support."""

    answer: Any
    """The parsed answer (``None`` when the text could not be parsed)."""
    text: str
    """The raw text of the first sample that gave this answer."""
    votes: int
    """How many samples gave this answer."""
    logprob: float | None
    """Best sum of token log-probabilities among those samples, if the backend gives them."""


class Cost(TypedDict):
    """What one node spent."""

    node: str
    """Node name."""
    seconds: float
    """Wall time of the node."""
    prompt_tokens: int
    """Prompt tokens sent to the model."""
    completion_tokens: int
    """Tokens generated."""
    requests: int
    """Model requests made."""


class Attempt(TypedDict):
    """One strategy's answer to the query; the router reads these to decide whether to escalate."""

    strategy: str
    """The strategy that produced it (``icl``, ``select``, ``reflect``, ``ttt``, ``expert``)."""
    answer: Any
    """Its answer (``None`` when nothing parseable came out)."""
    confidence: float
    """0-1, as the strategy measures it (vote share, selection share, expert = 1)."""
    seconds: float
    """Wall time the strategy spent."""
    tokens: int
    """Tokens it spent (prompt + completion)."""
    repeat_of: NotRequired[str]
    """Set when the attempt asked an earlier strategy's prompt again (reflection that kept no note
    re-asks ICL's): the same prompt gives the same answer, so it adds no support of its own
    (:func:`graph.router.best_answer`)."""


class ExpertReply(TypedDict, total=False):
    """What a human expert answered when a run paused for review (``Command(resume=...)``)."""

    action: str
    """``accept`` (a candidate), ``answer`` (the correct output) or ``note`` (a rule or hint)."""
    candidate: int
    """Index into the candidates shown, for ``accept``."""
    answer: Any
    """The correct output, for ``answer``."""
    note: str
    """A rule, hint or domain fact, for ``note``; stored with the task's notes."""
    expert: str
    """Who answered (recorded with the answer)."""


class Decision(TypedDict):
    """A routing decision and its reason, as the trace shows it."""

    strategy: str
    """The strategy chosen."""
    reason: str
    """Why, in one line with the numbers behind it."""
    evidence: dict[str, Any]
    """The measured inputs the decision was made from."""


class InputState(TypedDict):
    """What a caller (the CLI, a test, a parent graph) gives the graph."""

    task: dict[str, Any]
    """The task, as ``tasks.schema.Task.model_dump()``."""
    query: QueryIn
    """The query to answer."""


class OutputState(TypedDict, total=False):
    """What the graph gives back."""

    answer: Any
    """The chosen answer (``None`` if no sample could be parsed)."""
    confidence: float
    """0-1; agreement among samples (share of votes for the answer)."""
    correct: bool | None
    """Exact match against the query's target; ``None`` when there is no target."""
    strategy: str
    """The strategy that produced the answer."""
    reason: str
    """Why the router chose it."""
    candidates: list[Candidate]
    """Distinct answers with their votes, best first."""
    costs: Annotated[list[Cost], operator.add]
    """Per-node costs; appended (each node adds its own entry, none overwrites another's)."""
    attempts: Annotated[list[Attempt], operator.add]
    """Every strategy tried for this query, in order; appended so escalations keep earlier tries."""
    decisions: Annotated[list[Decision], operator.add]
    """Every routing decision, in order; appended so the result explains each escalation."""
    expert: ExpertReply | None
    """The expert's reply when the answer was given or confirmed by a person, else ``None``."""


class State(InputState, OutputState, total=False):
    """The full internal state."""

    decision: Decision
    """The router's latest decision (replaced each visit; the full list is ``decisions``)."""
    evidence: dict[str, Any]
    """What the router measured for this query (leave-one-out ICL accuracy, stored per-task
    evidence, capabilities, budget spent); replaced each visit, measured once per query."""
    notes: list[str]
    """Task notes gathered for this query (task file + long-term store)."""
    trace: Annotated[list[dict[str, Any]], operator.add]
    """Trace events for display; appended so every node's events are kept in order."""
