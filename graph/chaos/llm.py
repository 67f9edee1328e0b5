"""Family ``llm``: the OpenAI backend against a fault-injecting server.

Each case scripts the server (:mod:`graph.chaos.fault_server`) and makes **one logical call**
(``generate`` of one sample) through the backend the CLI builds (``models.factory.load_model``
with a short per-request time-out). It survives when:

- the call sends exactly the requests the retry policy promises (retry 429 / 5xx / resets /
  time-outs, honouring ``Retry-After``; never 400, 401 or an exhausted quota; never more than
  ``max_attempts``: no retry amplification);
- it ends within the deadline: the backend's overall deadline per logical call, or, where the
  backend has none, the one bound a user sets, the per-request time-out (a call that may take
  ``max_attempts`` x time-out plus back-off is lost: the user cannot bound it);
- a failure is one :class:`~models.base.ModelError` line with the key redacted (no 8-character
  piece of it, the redaction rule; servers echo the last few characters, as OpenAI does);
- and, for every persistent fault, ``python -m graph.run`` itself exits 1 with exactly one
  ``error:`` line on stderr and no traceback (in a child process; the trace header and retry
  warnings may come before it).

Each call runs in a child process, so a call that never ends is a lost case, not a stuck suite.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from graph.chaos import Env, FamilyReport
from graph.chaos import fault_server as fs
from graph.chaos.procs import Children, scratch_dir
from graph.chaos.tiny import mirror_task, write_task

KEY = "sk-chaos-0123456789abcdefSECRET"
#: The configured time-out: the deadline of one logical call (attempts and waits included), so
#: long enough for a retry after a 1 s Retry-After.
TIMEOUT_S = 3.0
MAX_ATTEMPTS = 4
#: Slack on the deadline for scheduling on a busy machine.
SLACK_S = 0.75


@dataclass
class Scenario:
    """A scripted server and what one logical call must do against it."""

    name: str
    script: list[fs.Fault]
    default: fs.Fault
    requests: tuple[int, int]  # fewest, most requests the call may send
    succeeds: bool | None  # None: either, as the deadline allows
    must_say: str = ""  # a word the one-line error must contain
    min_seconds: float = 0.0  # e.g. Retry-After honoured
    cli: bool = False  # also check python -m graph.run's one line


def scenarios() -> list[Scenario]:
    """Every fault once; transient faults then success, persistent faults until the end."""
    ok = fs.ok("[[1, 2]]")
    return [
        Scenario("429 + Retry-After: 1, then ok", [fs.rate_limited("1")], ok, (2, 2), True, min_seconds=0.9),
        Scenario("500, then ok", [fs.status(500)], ok, (2, 2), True),
        Scenario("connection reset, then ok", [fs.reset()], ok, (2, 2), True),
        # a retry after a time-out fits a deadline of two time-outs; a tighter deadline may refuse it
        Scenario("hang past the time-out, then ok", [fs.hang()], ok, (1, 2), None, min_seconds=TIMEOUT_S),
        Scenario("400 bad request", [], fs.status(400, "bad model"), (1, 1), False, "400", cli=True),
        Scenario(
            "401 (server echoes the key)",
            [],
            fs.status(401, f"Incorrect API key provided: {KEY[:12]}****{KEY[-6:]}."),
            (1, 1),
            False,
            "401",
            cli=True,
        ),
        Scenario("429 insufficient_quota", [], fs.insufficient_quota(), (1, 1), False, "quota", cli=True),
        Scenario("malformed JSON", [], fs.malformed(), (1, 1), False, cli=True),
        Scenario("empty choices", [], fs.empty_choices(), (1, 1), False, "no choices", cli=True),
        Scenario("500 every time", [], fs.status(500), (2, MAX_ATTEMPTS), False, "500", cli=True),
        Scenario("429 every time, Retry-After: 1", [], fs.rate_limited("1"), (2, MAX_ATTEMPTS), False, "429"),
        Scenario("429, Retry-After: 3600", [], fs.rate_limited("3600"), (1, MAX_ATTEMPTS), False, "429"),
        Scenario("reset every time", [], fs.reset(), (2, MAX_ATTEMPTS), False, cli=True),
        Scenario("hang every time", [], fs.hang(), (1, MAX_ATTEMPTS), False, cli=True),
    ]


def _prompt() -> Any:
    from models.base import ChatMessage, RenderedPrompt

    return RenderedPrompt(messages=[ChatMessage(role="user", content="mirror [[1, 2]]")], max_new_tokens=16)


def call_child(spec: dict[str, Any], out: Any, ready: Any) -> dict[str, Any]:
    """In a child: one logical call to ``spec["base_url"]``; what happened."""
    from models.base import ModelError
    from models.factory import load_model

    backend = load_model(
        "openai:chaos",
        openai_base_url=spec["base_url"],
        openai_api_key=KEY,
        timeout_s=TIMEOUT_S,
        max_attempts=MAX_ATTEMPTS,
    )
    ready.set()
    started = time.monotonic()
    error, escaped = "", ""
    succeeded = False
    try:
        succeeded = bool(backend.generate(_prompt(), n=1, temperature=0.0).samples)
    except ModelError as exc:
        error = str(exc)
    except Exception as exc:  # anything else escaping is a defect: the CLI would show a traceback
        escaped = f"{type(exc).__name__}: {str(exc)[:160]}"
    return {
        "succeeded": succeeded,
        "error": error,
        "escaped": escaped,
        "seconds": round(time.monotonic() - started, 3),
        "deadline_s": getattr(backend, "deadline_s", None),
    }


def _leaks_key(text: str) -> bool:
    """Whether ``text`` shows the key or any 8-character piece of it (the redaction rule)."""
    return any(KEY[i : i + 8] in text for i in range(len(KEY) - 7))


def logical_call(children: Children, scenario: Scenario) -> tuple[bool, str]:
    """One logical call (in a child, so a call that never ends cannot stall the suite) against a
    server scripted by ``scenario``; (survived, detail)."""
    cap = MAX_ATTEMPTS * (TIMEOUT_S + 2) + 3  # past any sane deadline: the call is stuck
    with fs.FaultServer(list(scenario.script), scenario.default) as server:
        child = children.run("graph.chaos.llm:call_child", {"base_url": server.base_url}, timeout_s=cap)
        requests = server.count
    if child.result is None:
        if child.timed_out:
            return False, f"no answer after {cap:.0f}s ({requests} requests): the call does not end"
        return False, f"the call crashed: {(child.error_lines or ['?'])[-1]}"
    got = child.result
    if got["escaped"]:
        return False, f"{got['escaped']} escaped the backend"
    seconds, error, deadline = got["seconds"], got["error"], got["deadline_s"]
    bound = deadline if deadline is not None else TIMEOUT_S
    problems = []
    low, high = scenario.requests
    if not low <= requests <= high:
        want = f"{low}" if low == high else f"{low}-{high}"
        problems.append(f"{requests} requests (expected {want})")
    if seconds > bound + SLACK_S:
        what = (
            f"deadline {deadline:g}s"
            if deadline is not None
            else (f"no overall deadline per call, against the {TIMEOUT_S:g}s time-out")
        )
        problems.append(f"took {seconds:.1f}s ({what})")
    if seconds < scenario.min_seconds:
        problems.append(f"took {seconds:.2f}s, less than the {scenario.min_seconds:g}s it had to wait")
    if scenario.succeeds is not None and got["succeeded"] != scenario.succeeds:
        problems.append("succeeded" if got["succeeded"] else f"failed: {error}")
    if error:
        if "\n" in error:
            problems.append("error is more than one line")
        if _leaks_key(error):
            problems.append("error shows the API key")
        if scenario.must_say and scenario.must_say.lower() not in error.lower():
            problems.append(f"error does not say {scenario.must_say!r}: {error}")
    summary = f"{requests} request(s), {seconds:.2f}s" + (f": {error}" if error else ", answered")
    return (not problems), ("; ".join(problems) + f" [{summary}]") if problems else summary


def cli_call(children: Children, scenario: Scenario, task_file: str) -> tuple[bool, str]:
    """``python -m graph.run`` (in a child) against a persistent fault: exit 1, one line."""
    with fs.FaultServer([], scenario.default) as server:
        spec = {
            "module": "graph.run",
            "argv": [
                "--task",
                task_file,
                "--model",
                "openai:chaos",
                "--strategy",
                "icl",
                "--samples",
                "1",
                "--timeout",
                str(TIMEOUT_S),
                "--quiet",
                "--db",
                str(children.workdir / "cli.sqlite"),
            ],
            "env": {
                "OPENAI_API_KEY": KEY,
                "MOCKINGBIRD_OPENAI_BASE_URL": server.base_url,
                "MOCKINGBIRD_OPENAI_API_KEY": None,
            },
        }
        child = children.run("graph.chaos.worker:cli_case", spec, timeout_s=120)
    errors = [line for line in child.error_lines if line.startswith("error:")]
    problems = []
    if child.exitcode != 1:
        problems.append(f"exit {child.exitcode} (expected 1)")
    if len(errors) != 1 or "Traceback" in child.stderr:
        problems.append(f"{len(errors)} error lines: {' | '.join(child.error_lines)[-240:]}")
    if _leaks_key(child.stderr + child.stdout):
        problems.append("the output shows the API key")
    detail = errors[0] if len(errors) == 1 else ""
    return (not problems), ("; ".join(problems) if problems else f"exit 1: {detail}")


def run(env: Env) -> FamilyReport:
    """Every fault scenario once as a logical call, and through the CLI where it fails for good."""
    rec = env.recorder("llm")
    items = scenarios()
    random.Random(env.seed).shuffle(items)
    children = Children(env.workdir)
    task_file = str(write_task(scratch_dir(env.workdir, "llm-") / "task.json", mirror_task()))
    for scenario in items:
        if not rec.budget.allows(2 * MAX_ATTEMPTS * TIMEOUT_S):
            rec.report.skipped += 1
            continue
        with rec.case(f"call: {scenario.name}") as out:
            out["ok"], out["detail"] = logical_call(children, scenario)
    for scenario in items:
        if not scenario.cli or (
            env.quick and scenario.name not in ("401 (server echoes the key)", "malformed JSON")
        ):
            continue
        if not rec.budget.allows(MAX_ATTEMPTS * TIMEOUT_S + 10):
            rec.report.skipped += 1
            continue
        with rec.case(f"graph.run: {scenario.name}") as out:
            out["ok"], out["detail"] = cli_call(children, scenario, task_file)
    return rec.report
