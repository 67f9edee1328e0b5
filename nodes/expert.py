"""``expert``: pause the run for a human expert, then use what they said.

Mockingbird's strongest finding: reflection alone does not reach what feedback from a domain
expert gives. The node calls LangGraph ``interrupt()`` once, *before* any side effect (a resumed
node re-runs from its start), with everything a reviewer needs (:func:`review_payload`). The run
waits in the SQLite checkpointer, across process exits, until it is resumed with
``Command(resume=reply)`` (``python -m graph.review``, its web page, or a parent graph). The
reply (:class:`ExpertInput`) is one of:

- ``accept``: a candidate becomes the answer;
- ``answer``: the correct output becomes the answer and joins the task's labelled examples, so
  every later query of the task sees it as a demonstration;
- ``note``: a rule, hint or domain fact, kept with the task's notes (reused by every later prompt,
  by reflection and by TTT), and the query is predicted again with it.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graph.context import Context, resolve_model
from graph.expert_reply import REVIEW_KIND, parse_reply
from graph.memory import add_task_example, add_task_notes
from graph.state import Candidate, ExpertReply, State
from models.base import ModelBackend
from nodes.candidates import confidence
from nodes.common import get_context, strategy_update
from nodes.icl import ICLPredictor, uses_views
from tasks.schema import Task


def review_payload(state: State) -> dict[str, Any]:
    """Everything a reviewer needs, JSON-friendly (it is stored in the checkpoint)."""
    task = state["task"]
    candidates = state.get("candidates", [])
    total = max(1, sum(c["votes"] for c in candidates))  # share of the samples behind each answer
    return {
        "kind": REVIEW_KIND,
        "task_id": task["id"],
        "task_type": task.get("type"),
        "task_kind": task["kind"],
        "function": task["function"],
        "demos": task.get("train", []),
        "notes": state.get("notes", []),
        "query": state["query"]["input"],
        "candidates": [
            {"answer": c["answer"], "votes": c["votes"], "share": round(c["votes"] / total, 4)}
            for c in candidates
        ],
        "confidence": state.get("confidence", 0.0),
        "attempts": [
            {"strategy": a["strategy"], "answer": a["answer"], "confidence": a["confidence"]}
            for a in state.get("attempts", [])
        ],
        "reasons": [d["reason"] for d in state.get("decisions", [])],
    }


def make_expert_node(bound: ModelBackend | None = None) -> Any:  # a LangGraph node
    """Build the ``expert`` node; ``bound`` fixes the model (used to re-predict after a note)."""

    def expert(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        payload = review_payload(state)
        raw = interrupt(payload)  # first, before any side effect: the node re-runs on resume
        reply = parse_reply(raw, payload)
        started = time.perf_counter()
        store = runtime.store if runtime else None
        task = Task.model_validate(state["task"])
        query = state["query"]["input"]
        record = ExpertReply(**reply.model_dump(exclude_none=True))  # type: ignore[typeddict-item]
        notes = list(state.get("notes", []))
        update: dict[str, Any] = {}
        if reply.action == "accept":
            chosen = state.get("candidates", [])[reply.candidate or 0]
            candidates = [Candidate(answer=chosen["answer"], text="", votes=1, logprob=None)]
            conf, message = 1.0, f"{reply.expert} accepted candidate {reply.candidate}"
            usage = None
        elif reply.action == "answer":
            add_task_example(store, task.key, query, reply.answer, expert=reply.expert)
            candidates = [Candidate(answer=reply.answer, text="", votes=1, logprob=None)]
            conf, message = 1.0, f"{reply.expert} gave the answer; added to the task's examples"
            usage = None
        else:
            note = (reply.note or "").strip()
            add_task_notes(store, task.key, [note])
            notes = list(dict.fromkeys([*notes, note]))
            ctx = get_context(runtime)
            model = resolve_model(ctx, bound, task.kind)
            candidates, gen = ICLPredictor(model).forward(
                task,
                query,
                notes=notes,
                samples=ctx.samples,
                temperature=ctx.temperature,
                max_demos=ctx.max_demos,
                seed=ctx.seed,
                views=uses_views(ctx, task, model),
            )
            conf, usage = confidence(candidates, len(gen.samples)), gen.usage
            message = f"{reply.expert} added a note; predicted again with it (confidence {conf:.2f})"
            update["notes"] = notes
        trace = [{"node": "expert", "message": message}]
        return (
            update
            | strategy_update("expert", candidates, conf, started, usage, trace)
            | {"strategy": "expert", "expert": record}
        )

    return expert
