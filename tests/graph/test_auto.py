"""The router in the graph: leave-one-out evidence, escalation, budget, and learning from outcomes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from langgraph.store.memory import InMemoryStore

from graph.builder import build_graph
from graph.context import Context
from graph.memory import MODEL_EVIDENCE_NS, TYPE_EVIDENCE_NS, task_evidence
from graph.runner import run_query
from models.base import Capabilities, Generation, ModelBackend, RenderedPrompt, Sample, Usage
from prompts.compact import CompactRenderer


class RuleBackend(ModelBackend):
    """Answers the prompt's last (query) row with ``rule``: a model whose accuracy we choose."""

    capabilities = Capabilities()

    def __init__(self, rule: Callable[[list[int]], list[int]], logprob: float = -0.05) -> None:
        self.rule, self.name, self.renderer, self.calls = rule, "rule", CompactRenderer(), 0
        self.logprob = logprob  # of every answer: how sure the model is of it

    def generate(self, prompt: RenderedPrompt, *, n: int = 1, temperature: float = 0.0,
                 max_new_tokens: int | None = None, seed: int | None = None) -> Generation:  # fmt: skip
        started = time.perf_counter()
        self.calls += 1
        row = [int(c) for c in re.findall(r"I(\d+)O$", (prompt.text or "").rstrip("\n"))[-1]]
        text = "".join(map(str, self.rule(row))) + "\n"
        return Generation(
            samples=[Sample(text=text, logprob=self.logprob) for _ in range(n)],
            usage=Usage(prompt_tokens=len(prompt.text or ""), completion_tokens=len(text) * n, requests=1),
            seconds=time.perf_counter() - started,
        )


def test_icl_right_on_its_demonstrations_is_not_escalated(task):
    result = run_query(build_graph(model=RuleBackend(lambda r: r[::-1])), task, 0, context=Context(samples=1))
    assert result.strategy == "icl" and result.correct is True
    assert "LOO-ICL 1.00 on 3 demos" in result.reason and "no escalation needed" in result.reason


def test_the_confidence_reported_is_the_one_the_stop_rule_used(task):
    model = RuleBackend(lambda r: r[::-1])
    fixed = run_query(build_graph(model=model), task, 0, context=Context(samples=1, strategy="icl"))
    assert fixed.confidence is not None and round(fixed.confidence, 3) == 0.951  # the sequence probability
    # auto: the same answer, its confidence capped by ICL's expected accuracy on this task, from
    # 3 of 3 demonstrations right: (3 + 0.5) / (3 + 1)
    auto = run_query(build_graph(model=model), task, 0, context=Context(samples=1))
    assert auto.answer == fixed.answer and auto.confidence == 0.875


def test_a_unanimous_but_improbable_answer_is_unsure_and_escalates(task):
    # Four views agree (the rule is right and commutes with them), and ICL solves every
    # demonstration; what differs is how probable the model finds its answer.
    context = Context(samples=4, sample_views="on")
    sure = run_query(build_graph(model=RuleBackend(lambda r: r[::-1])), task, 0, context=context)
    assert sure.strategy == "icl" and "no escalation needed" in sure.reason
    doubtful = RuleBackend(lambda r: r[::-1], logprob=-2.0)
    unsure = run_query(build_graph(model=doubtful), task, 0, context=context)
    assert "icl confidence 0.14" in unsure.reason and "chose reflect" in unsure.reason
    assert unsure.correct is True  # reflection finds nothing to correct and keeps the answer


def test_icl_wrong_on_its_demonstrations_escalates_and_says_why(task):
    store = InMemoryStore()
    g = build_graph(model=RuleBackend(lambda r: r), store=store)  # copies the input: always wrong
    events: list[dict] = []
    result = run_query(g, task, 0, context=Context(samples=1), on_event=events.append)
    # no adapter, selection has no measured gain (prior 0): reflection is the one step up
    assert result.strategy == "reflect" and result.correct is False
    said = [e["message"] for e in events if e.get("node") == "route" and "message" in e]
    assert any(m.startswith("chose reflect: ") for m in said)
    assert not any("chose reflect: chose" in m for m in said)  # the verb is said once
    assert "chose reflect" in result.reason and "LOO-ICL 0.00" in result.reason
    assert "no strategy left expected to do better" in result.reason
    # the outcome teaches the router: reflection's gain on this task (recorded as an escalation
    # from agreeing samples: one sample of a rule is sure of itself) and the model's costs
    assert task_evidence(store, task.key)["observed"]["reflect@agreed"] == [1, 0.0, 0.0]  # n, sum, squares
    costs = store.get(MODEL_EVIDENCE_NS, "rule").value["costs"]
    assert set(costs) == {"icl", "reflect"}
    # ... and the record of the task's type, which later tasks of the type read
    assert store.get(TYPE_EVIDENCE_NS, "rule|toy").value["gains"] == {"reflect@agreed": [1, 0.0, 0.0]}
    # next query of the same task: the measured gain (0, not the prior) keeps it at ICL
    again = run_query(g, task, 0, context=Context(samples=1))
    assert again.strategy == "icl" and "no strategy left expected to do better" in again.reason


def test_a_spent_token_budget_stops_escalation(task):
    model = RuleBackend(lambda r: r)
    result = run_query(build_graph(model=model), task, 0, context=Context(samples=1, budget_tokens=50))
    assert result.strategy == "icl" and "budget 50 tokens spent" in result.reason
    assert model.calls == 3 + 1  # three leave-one-out predictions and the query, nothing more
