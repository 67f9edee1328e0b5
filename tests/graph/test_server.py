"""The graph served by ``langgraph dev`` (``langgraph.json``), called through ``langgraph-sdk``.

A real server (langgraph-cli, in-memory runtime) on 127.0.0.1 and a free port, offline; the model
is the tiny local checkpoint, named in each run's context. Skips without langgraph-cli, except
under CI (``CI=true``, ``required_in_ci``), which installs it and must run this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _free_port
from tests.graph.conftest import reverse_task
from tests.graph.test_cli import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.required_in_ci("langgraph-cli[inmem] and langgraph-sdk (the server extra)"),
]


def _langgraph_cli() -> str | None:
    found = shutil.which("langgraph") or str(Path(sys.executable).with_name("langgraph"))
    try:
        import langgraph_api  # noqa: F401  (the inmem extra)
        import langgraph_sdk  # noqa: F401
    except ImportError:
        return None
    return found if Path(found).exists() else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cli = _langgraph_cli()
    if cli is None:
        pytest.skip("langgraph-cli[inmem] / langgraph-sdk not installed (the 'server' extra)")
    port = _free_port()
    cwd = tmp_path_factory.mktemp("langgraph-dev")  # the dev server keeps its state under cwd
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOCKINGBIRD_", "OPENAI_", "LANGSMITH_"))}
    env.update({"PYTHONPATH": str(ROOT), "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"})
    log = (cwd / "server.log").open("w")
    proc = subprocess.Popen(
        [cli, "dev", "--config", str(ROOT / "langgraph.json"), "--host", "127.0.0.1", "--port", str(port),
         "--no-browser", "--no-reload"],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not start: {(cwd / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _payload(query: list[list[int]], target: list[list[int]] | None = None) -> dict[str, Any]:
    return {"task": reverse_task().model_dump(mode="json"), "query": {"input": query, "target": target}}


def test_the_served_graph_answers_a_query_and_exposes_its_context_schema(server, tiny_checkpoint):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    [assistant] = client.assistants.search(graph_id="mockingbird")  # the default one, made at start
    schemas = client.assistants.get_schemas(assistant["assistant_id"])
    props = schemas["context_schema"]["properties"]
    assert {"model", "strategy", "samples", "expert_review"} <= set(props)
    thread = client.threads.create()
    out = client.runs.wait(
        thread["thread_id"], "mockingbird", input=_payload([[7, 0, 8, 9]], [[9, 8, 0, 7]]),
        context={"model": f"hf:{tiny_checkpoint}", "strategy": "icl", "samples": 1},
    )  # fmt: skip
    assert out["strategy"] == "icl"
    assert out["correct"] in (True, False)  # scored against the target by the served graph
    assert [c["node"] for c in out["costs"]] == ["prepare", "route", "icl", "route", "finalize"]


def test_an_expert_interrupt_waits_on_the_server_and_resumes_through_the_sdk(server, tiny_checkpoint):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    ctx = {"model": f"hf:{tiny_checkpoint}", "strategy": "expert", "samples": 2}
    thread = client.threads.create()
    tid = thread["thread_id"]
    client.runs.wait(tid, "mockingbird", input=_payload([[7, 0, 8, 9]], [[9, 8, 0, 7]]), context=ctx)
    state = client.threads.get_state(tid)
    [review] = [i["value"] for t in state["tasks"] for i in t.get("interrupts", [])]
    assert review["kind"] == "expert_review" and review["query"] == [[7, 0, 8, 9]]
    waiting = client.threads.search(status="interrupted", limit=100)
    assert tid in {t["thread_id"] for t in waiting}  # how a reviewer finds it on a served graph
    reply = {"action": "answer", "answer": [[9, 8, 0, 7]], "expert": "ada"}
    out = client.runs.wait(tid, "mockingbird", command={"resume": reply}, context=ctx)
    assert out["answer"] == [[9, 8, 0, 7]] and out["correct"] is True and out["strategy"] == "expert"
    assert client.threads.get(tid)["status"] == "idle"
