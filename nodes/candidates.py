"""Turning samples into candidates: parse, group identical answers, vote.

Shared by every strategy that samples: confidence is the share of samples that agree with the
answer, or (ICL and reflection, where the backend gives log-probabilities) the answer's sequence
probability.
"""

from __future__ import annotations

import math
from typing import Any

from graph.state import Candidate
from models.base import Generation, PromptParts, Renderer, Sample, answer_key
from tasks.schema import TaskKind


def aggregate(
    gen: Generation, renderer: Renderer, kind: TaskKind, parts: PromptParts | None = None
) -> list[Candidate]:
    """Group the samples of ``gen`` by parsed answer, most votes first.

    ``parts`` are the prompt's parts, for renderers whose answer symbols depend on them (tables).

    Ties are broken by the first sample's order (the greedy sample comes first), then by
    log-probability. Unparseable samples are grouped as one ``None`` candidate, always last
    among equals, so a parse failure never wins a tie.
    """
    return group([(renderer.parse(sample.text, kind, parts), sample) for sample in gen.samples])


def group(answers: list[tuple[Any, Sample]]) -> list[Candidate]:
    """Group parsed ``(answer, sample)`` pairs by answer, most votes first (ties: the first
    seen, so the greedy sample's; an unparseable ``None`` answer last among equals)."""
    groups: dict[str, Candidate] = {}
    order: dict[str, int] = {}
    for i, (answer, sample) in enumerate(answers):
        key = answer_key(answer)
        if key not in groups:
            groups[key] = Candidate(answer=answer, text=sample.text, votes=0, logprob=sample.logprob)
            order[key] = i
        cand = groups[key]
        cand["votes"] += 1
        if sample.logprob is not None and (cand["logprob"] is None or sample.logprob > cand["logprob"]):
            cand["logprob"] = sample.logprob
    return sorted(
        groups.values(),
        key=lambda c: (c["answer"] is None, -c["votes"], order[answer_key(c["answer"])]),
    )


def confidence(candidates: list[Candidate], total: int, *, probability: bool = False) -> float:
    """Confidence of the top candidate.

    With several samples: the share that agree with it. With one sample and a log-probability:
    the sequence probability, so a single greedy answer still says how sure the model was. With
    ``probability`` (ICL and reflection) the top answer's sequence probability whenever the
    backend gives one, however many samples: the most likely of the samples that gave the
    answer. Measured on the held-out families (180 tasks, ICL with 4 views, step 29,000): it
    tells right answers from wrong ones better than agreement (AUROC 0.89 against 0.81; shared
    1D-ARC, 45 tasks: 0.96 against 0.80), since four views agree or split for reasons of their
    own (a mirrored row is harder to read) and the vote share moves in steps of a quarter.
    """
    if not candidates or total <= 0 or candidates[0]["answer"] is None:
        return 0.0
    top = candidates[0]
    if (total == 1 or probability) and top["logprob"] is not None:
        return round(math.exp(top["logprob"]), 4)
    return round(top["votes"] / total, 4)
