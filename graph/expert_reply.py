"""The expert review's protocol: what an interrupt for review is called and what a reply may be.

One parser for every place a reply comes from (the terminal session, the web page, the SDK, the
``expert`` node itself), so a bad reply is refused with the same one line everywhere, before
anything is resumed or stored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graph.errors import InvalidInputError
from tasks.errors import error_line
from tasks.schema import check_value

#: ``kind`` of the interrupt payload, so reviewers can tell an expert review from other pauses.
REVIEW_KIND = "expert_review"


class ExpertInput(BaseModel):
    """A reviewer's reply, validated before anything is resumed or stored."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["accept", "answer", "note"]
    candidate: int | None = Field(None, description="index into the candidates shown, for accept")
    answer: Any = Field(None, description="the correct output, for answer")
    note: str | None = Field(None, description="a rule, hint or fact, for note")
    expert: str = Field("anonymous", description="who answered")


#: Clearer messages than pydantic's for the mistakes reviewers make.
_MESSAGES = {
    "literal_error": "must be accept, answer or note",
    "extra_forbidden": "unknown field (expected action, candidate, answer, note, expert)",
}


def parse_reply(raw: Any, payload: dict[str, Any]) -> ExpertInput:
    """Validate a reply against the review it answers; one-line :class:`InvalidInputError` if bad.

    Args:
        raw: The reply (a dict as ``Command(resume=...)`` carries it).
        payload: The interrupt payload it answers (task kind, candidates shown).
    """
    try:
        reply = ExpertInput.model_validate(raw)
    except ValidationError as exc:
        line = error_line(exc, whole="reply", messages=_MESSAGES)
        raise InvalidInputError(f"expert reply: {line}") from None
    shown = payload.get("candidates", [])
    if reply.action == "accept":
        if reply.candidate is None or not 0 <= reply.candidate < len(shown):
            raise InvalidInputError(
                f"expert reply: candidate: must be 0..{len(shown) - 1} for accept, got {reply.candidate}"
                if shown
                else "expert reply: accept: there are no candidates to accept; give an answer or a note"
            )
        if shown[reply.candidate]["answer"] is None:
            raise InvalidInputError(
                f"expert reply: candidate: candidate {reply.candidate} has no answer (unparseable); "
                "give the answer instead"
            )
    elif reply.action == "answer":
        if reply.answer is None:
            raise InvalidInputError("expert reply: answer: missing (the correct output, as JSON)")
        try:
            check_value(payload["task_kind"], reply.answer, "expert reply: answer")
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
    elif not (reply.note or "").strip():
        raise InvalidInputError("expert reply: note: must not be empty")
    if not reply.expert.strip():
        raise InvalidInputError("expert reply: expert: must not be empty")
    return reply
