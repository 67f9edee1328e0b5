"""OpenAIBackend against a fault-injecting server of our own and a real ``transformers serve``.

The fault server counts requests, so every test pins down exactly how many requests one logical
call sends: the retry layer must neither amplify (SDK retries on top of ours) nor give up early.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.chaos.fault_server import (
    FaultServer,
    bad_request,
    insufficient_quota,
    ok,
    rate_limited,
    server_error,
    slow,
    unauthorized,
)
from models.base import CapabilityError, ChatMessage, ModelConfigError, ModelError, RenderedPrompt
from models.openai_backend import OpenAIBackend, RetryPolicy, redact

KEY = "sk-test-SECRETKEY0123456789abcdef"
PROMPT = RenderedPrompt(
    messages=[
        ChatMessage(role="system", content="You are f."),
        ChatMessage(role="user", content="Input: 1\nOutput:"),
    ],
    stop=["\n"],
    max_new_tokens=16,
)


def backend(server: FaultServer, *, logprobs: bool = False, price_per_mtok=None, **retry) -> OpenAIBackend:
    """A backend of ``server`` with quick retries (``retry`` overrides :class:`RetryPolicy` fields)."""
    policy = RetryPolicy(
        **({"timeout_s": 5.0, "max_attempts": 4, "max_wait_s": 5.0, "backoff_s": 0.01} | retry)
    )
    return OpenAIBackend(
        "fake-model",
        base_url=server.base_url,
        api_key=KEY,
        retry=policy,
        logprobs=logprobs,
        price_per_mtok=price_per_mtok,
    )


def test_success_sends_one_request_with_our_parameters() -> None:
    with FaultServer([ok("[[1, 2]]", prompt_tokens=20, completion_tokens=4)]) as server:
        gen = backend(server, price_per_mtok=(1.0, 2.0)).generate(PROMPT, temperature=0.0, seed=7)
    assert server.count == 1
    req = server.requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.body["model"] == "fake-model"
    assert req.body["messages"] == [
        {"role": "system", "content": "You are f."},
        {"role": "user", "content": "Input: 1\nOutput:"},
    ]
    assert req.body["stop"] == ["\n"]
    assert req.body["temperature"] == 0.0
    assert req.body["seed"] == 7
    assert req.body.get("max_completion_tokens", req.body.get("max_tokens")) == 16
    assert "n" not in req.body
    assert [s.text for s in gen.samples] == ["[[1, 2]]"]
    assert gen.samples[0].logprob is None
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.requests) == (20, 4, 1)
    assert gen.usage.cost_usd == pytest.approx((20 * 1.0 + 4 * 2.0) / 1e6)
    assert gen.seconds > 0


def test_text_prompt_becomes_one_user_message() -> None:
    with FaultServer() as server:
        backend(server).generate(RenderedPrompt(text="I0O"), max_new_tokens=5)
    assert server.requests[0].body["messages"] == [{"role": "user", "content": "I0O"}]
    assert (
        server.requests[0].body.get("max_completion_tokens", server.requests[0].body.get("max_tokens")) == 5
    )


def test_rate_limits_are_retried_honouring_retry_after() -> None:
    with FaultServer([rate_limited(retry_after=1), rate_limited(retry_after=0.2), ok("[[3]]")]) as server:
        start = time.monotonic()
        gen = backend(server).generate(PROMPT)
        elapsed = time.monotonic() - start
    assert server.count == 3
    assert gen.samples[0].text == "[[3]]"
    assert gen.usage.requests == 1  # usage counts answered requests
    gap = server.requests[1].at - server.requests[0].at
    assert gap >= 0.95, f"Retry-After: 1 not honoured (waited {gap:.2f}s)"
    assert elapsed >= 1.15


def test_retry_after_is_capped_by_max_wait() -> None:
    with FaultServer([rate_limited(retry_after=30), ok()]) as server:
        start = time.monotonic()
        backend(server, max_wait_s=0.2).generate(PROMPT)
    assert server.count == 2
    assert time.monotonic() - start < 3


def test_insufficient_quota_is_not_retried() -> None:
    with FaultServer([insufficient_quota(), ok()]) as server, pytest.raises(ModelError) as info:
        backend(server).generate(PROMPT)
    assert server.count == 1
    assert "quota" in str(info.value).lower()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("reply", "status"), [(unauthorized(), 401), (bad_request(), 400)])
def test_client_errors_are_not_retried(reply, status) -> None:
    with FaultServer([reply, ok()]) as server, pytest.raises(ModelError) as info:
        backend(server).generate(PROMPT)
    assert server.count == 1
    assert str(status) in str(info.value)


def test_forbidden_and_not_found_are_not_retried() -> None:
    for status in (403, 404):
        reply = server_error(status)
        with FaultServer([reply, ok()]) as server, pytest.raises(ModelError):
            backend(server).generate(PROMPT)
        assert server.count == 1, status


def test_server_errors_exhaust_max_attempts() -> None:
    with FaultServer(default=server_error(500)) as server, pytest.raises(ModelError) as info:
        backend(server, max_attempts=3).generate(PROMPT)
    assert server.count == 3
    message = str(info.value)
    assert "500" in message and "3 attempts" in message
    assert "\n" not in message


def test_server_error_then_success() -> None:
    with FaultServer([server_error(502), server_error(503), ok("[[0]]")]) as server:
        gen = backend(server).generate(PROMPT)
    assert server.count == 3
    assert gen.samples[0].text == "[[0]]"


def test_slow_server_times_out_without_hanging() -> None:
    with FaultServer(default=slow(3.0)) as server:
        start = time.monotonic()
        with pytest.raises(ModelError) as info:
            backend(server, timeout_s=0.5, max_attempts=2).generate(PROMPT)
        elapsed = time.monotonic() - start
    assert server.count == 2
    assert elapsed < 0.5 * 2 + 1.5, f"took {elapsed:.1f}s"
    assert "Timeout" in str(info.value)


def test_deadline_stops_retries() -> None:
    with FaultServer(default=rate_limited(retry_after=0.4)) as server:
        start = time.monotonic()
        with pytest.raises(ModelError) as info:
            backend(server, max_attempts=50, deadline_s=1.0).generate(PROMPT)
        elapsed = time.monotonic() - start
    assert elapsed < 1.5
    assert server.count == 3  # at 0, 0.4 and 0.8 s; a fourth would start past the deadline
    assert "RateLimitError after 3 attempts" in str(info.value)


def test_the_configured_timeout_is_one_deadline_for_the_whole_call() -> None:
    """``--timeout`` / ``MOCKINGBIRD_TIMEOUT_S`` bounds a logical call, retries and waits included.

    Before it was per request only: 4 attempts of 1 s each plus back-off waits on this server.
    """
    from models.factory import clear_model_cache, load_model

    clear_model_cache()
    with FaultServer(default=slow(3.0)) as server:
        model = load_model(
            "openai:fake-model", openai_base_url=server.base_url, openai_api_key=KEY, timeout_s=1.0,
            max_attempts=4,
        )  # fmt: skip
        with pytest.raises(ModelError) as info:
            model.generate(PROMPT)
    assert server.count == 1  # the first request used the whole deadline: no retry after it (was 4)
    assert "Timeout" in str(info.value)
    with FaultServer(default=server_error()) as server:  # failures that come back fast are retried
        model = load_model("openai:other-model", openai_base_url=server.base_url, openai_api_key=KEY,
                           timeout_s=30.0, max_attempts=3)  # fmt: skip
        with pytest.raises(ModelError, match="after 3 attempts"):
            model.generate(PROMPT)
    assert server.count == 3


def test_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    retry = RetryPolicy(timeout_s=1, max_attempts=2, backoff_s=0.01)
    b = OpenAIBackend("m", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, retry=retry)
    with pytest.raises(ModelError) as info:
        b.generate(PROMPT)
    assert "2 attempts" in str(info.value)


def test_api_key_never_in_error_text() -> None:
    # OpenAI echoes (part of) a wrong key in its 401 message; the error must not show it.
    with FaultServer([unauthorized(echo=KEY)]) as server:
        b = backend(server)
        with pytest.raises(ModelError) as info:
            b.generate(PROMPT)
    assert server.count == 1
    assert KEY not in str(info.value)
    assert "SECRETKEY" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert KEY not in repr(b)


def test_redact() -> None:
    assert KEY not in redact(f"bad key {KEY}!", KEY)
    assert "SECRETKEY0123456" not in redact("partial: sk-tes***SECRETKEY0123456789abc", KEY)
    assert redact("Authorization: Bearer abc.def", None) == "Authorization: ***"
    assert redact("nothing secret", KEY) == "nothing secret"


def test_n_samples_in_one_request() -> None:
    with FaultServer([ok("[[1]]", prompt_tokens=10, completion_tokens=2)]) as server:
        gen = backend(server).generate(PROMPT, n=3, temperature=0.8)
    assert server.count == 1
    assert server.requests[0].body["n"] == 3
    assert len(gen.samples) == 3
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.requests) == (10, 6, 1)


def test_n_samples_from_a_server_that_ignores_n() -> None:
    one_choice = ok("[[2]]", max_choices=1, prompt_tokens=10, completion_tokens=2)
    with FaultServer(default=one_choice) as server:
        gen = backend(server).generate(PROMPT, n=3, temperature=0.8, seed=5)
    assert server.count == 3
    assert [r.body.get("n", 1) for r in server.requests] == [3, 2, 1]
    assert [r.body["seed"] for r in server.requests] == [5, 6, 7]  # not the same seed thrice
    assert len(gen.samples) == 3
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.requests) == (30, 6, 3)


def test_extra_choices_are_dropped() -> None:
    with FaultServer([ok(contents=["a", "b", "c"])]) as server:
        gen = backend(server).generate(PROMPT, n=2, temperature=1.0)
    assert [s.text for s in gen.samples] == ["a", "b"]


def test_logprobs_are_summed_per_choice() -> None:
    reply = ok(contents=["x", "yz"], logprobs=[[-0.5], [-1.0, -0.25]])
    with FaultServer([reply]) as server:
        b = backend(server, logprobs=True)
        gen = b.generate(PROMPT, n=2, temperature=1.0)
    assert b.capabilities.logprobs
    assert server.requests[0].body["logprobs"] is True
    assert gen.samples[0].token_logprobs == [-0.5] and gen.samples[0].logprob == pytest.approx(-0.5)
    assert gen.samples[1].token_logprobs == [-1.0, -0.25] and gen.samples[1].logprob == pytest.approx(-1.25)


def test_logprobs_missing_from_server() -> None:
    with FaultServer() as server:
        gen = backend(server, logprobs=True).generate(PROMPT)
    assert gen.samples[0].logprob is None


def test_capabilities_and_unsupported_operations() -> None:
    with FaultServer() as server:
        b = backend(server)
        assert b.name == "openai:fake-model"
        assert b.renderer.name == "chat"
        assert not b.capabilities.score and not b.capabilities.adapt
        with pytest.raises(CapabilityError):
            b.score(PROMPT, ["a"])
        with pytest.raises(CapabilityError), b.adapter(r=4):
            pass
    assert server.count == 0


def test_constructor_validates() -> None:
    with pytest.raises(ModelConfigError):
        OpenAIBackend("", base_url=None, api_key=KEY)
    with pytest.raises(ModelConfigError):
        OpenAIBackend("m", base_url=None, api_key="")
    with pytest.raises(ModelConfigError):
        OpenAIBackend("m", base_url=None, api_key=KEY, retry=RetryPolicy(max_attempts=0))


# -- a real server nobody here wrote ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def transformers_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``transformers serve`` on the tiny checkpoint; yields the base URL."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    cli = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
    if not Path(cli).exists():
        pytest.skip("the transformers CLI is not installed")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                cli,
                "serve",
                "--device",
                "cpu",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                str(tiny_checkpoint),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.skip(f"transformers serve exited ({proc.returncode}): {log_path.read_text()[-500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after 90 s: {log_path.read_text()[-500:]}")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.required_in_ci("transformers[serving]")
def test_real_transformers_serve(transformers_server: str, tiny_checkpoint: Path) -> None:
    # A pinned server only accepts its own model name: the path as given on its command line.
    b = OpenAIBackend(
        str(tiny_checkpoint), base_url=transformers_server, api_key="unused", retry=RetryPolicy(timeout_s=60)
    )
    prompt = RenderedPrompt(text="I0033O", max_new_tokens=6)
    gen = b.generate(prompt, n=2, temperature=0.0)
    assert len(gen.samples) == 2  # the server ignores n: two requests
    assert all(isinstance(s.text, str) and s.text for s in gen.samples)
    assert gen.usage.requests == 2
    assert gen.usage.prompt_tokens > 0 and 0 < gen.usage.completion_tokens <= 12


@pytest.mark.slow
@pytest.mark.required_in_ci("transformers[serving]")
def test_real_server_rejects_wrong_model_without_retry(transformers_server: str) -> None:
    b = OpenAIBackend(
        "no-such-model", base_url=transformers_server, api_key="unused", retry=RetryPolicy(timeout_s=30)
    )
    with pytest.raises(ModelError) as info:
        b.generate(RenderedPrompt(text="x", max_new_tokens=2))
    assert "400" in str(info.value)
    assert "1 attempt" in str(info.value)
