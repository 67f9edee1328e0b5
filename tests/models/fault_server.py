"""A scriptable, fault-injecting OpenAI-compatible server for tests (127.0.0.1 only).

Each test scripts the replies to successive requests (rate limits, quota errors, server errors,
auth failures, slow answers, successes); once the script is used up every request gets the
``default`` reply. Every request is recorded (path, headers, parsed JSON body, arrival time), so
tests can assert exactly how many requests one logical call sent::

    with FaultServer([rate_limited(), ok("[[1]]")]) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, api_key="sk-test")
        backend.generate(prompt)
        assert server.count == 2
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class Reply:
    """One scripted reply.

    Attributes:
        status: HTTP status code.
        body: JSON body for error replies; ``None`` on success means "build a completion".
        headers: Extra response headers (e.g. ``Retry-After``).
        delay_s: Seconds to sleep before answering (to trigger client time-outs).
        contents: Completion texts, one choice each, on success. ``None``: one choice per
            requested ``n`` (up to ``max_choices``), all with ``content``.
        content: The text of each choice when ``contents`` is not given.
        max_choices: Most choices returned (1 imitates servers that ignore ``n``).
        prompt_tokens: Reported prompt tokens.
        completion_tokens: Reported completion tokens per choice.
        logprobs: Per-token log-probs for each choice, if the reply should carry them.
    """

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    contents: list[str] | None = None
    content: str = "[[1]]"
    max_choices: int = 1000
    prompt_tokens: int = 11
    completion_tokens: int = 3
    logprobs: list[list[float]] | None = None


def ok(content: str = "[[1]]", **kwargs: Any) -> Reply:
    """A successful completion."""
    return Reply(content=content, **kwargs)


def rate_limited(retry_after: float | None = 1) -> Reply:
    """429 with an optional ``Retry-After`` header (seconds)."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Reply(
        status=429,
        headers=headers,
        body={"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
    )


def insufficient_quota() -> Reply:
    """429 that must not be retried: the account is out of credit."""
    return Reply(
        status=429,
        body={
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
        },
    )


def server_error(status: int = 500) -> Reply:
    """A 5xx."""
    return Reply(
        status=status, body={"error": {"message": "The server had an error", "type": "server_error"}}
    )


def unauthorized(echo: str = "") -> Reply:
    """401; ``echo`` is put into the message, as OpenAI does with (part of) a wrong key."""
    return Reply(
        status=401,
        body={
            "error": {
                "message": f"Incorrect API key provided: {echo}. You can find your API key at the dashboard.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    )


def bad_request(message: str = "Invalid request") -> Reply:
    """400."""
    return Reply(status=400, body={"error": {"message": message, "type": "invalid_request_error"}})


def slow(delay_s: float, content: str = "[[1]]") -> Reply:
    """A success that arrives after ``delay_s`` seconds."""
    return Reply(delay_s=delay_s, content=content)


@dataclass
class Recorded:
    """One request as the server saw it (header names lower-cased)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FaultServer:
    """A threaded HTTP server on a free port of 127.0.0.1 that follows a script.

    Args:
        script: Replies to the first requests, in order.
        default: The reply once the script is used up.
    """

    def __init__(self, script: list[Reply] | None = None, default: Reply | None = None) -> None:
        self.script = list(script or [])
        self.default = default or ok()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def count(self) -> int:
        """Number of requests received so far."""
        with self._lock:
            return len(self.requests)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            return self.script.pop(0) if self.script else self.default

    def start(self) -> FaultServer:
        """Bind and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                logger.debug("fault server: " + format, *args)

            def do_GET(self) -> None:
                self._send(404, {"error": {"message": "not found"}}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = server._next(Recorded(self.path, headers, body, time.monotonic()))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200 or reply.body is not None:
                    self._send(reply.status, reply.body or {}, reply.headers)
                    return
                self._send(200, _completion(body, reply), reply.headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    logger.debug("fault server: client went away")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fault-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _completion(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """An OpenAI chat completion answering ``request`` as ``reply`` says."""
    if reply.contents is not None:
        contents = reply.contents
    else:
        contents = [reply.content] * max(1, min(int(request.get("n") or 1), reply.max_choices))
    choices = []
    for i, text in enumerate(contents):
        choice: dict[str, Any] = {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "logprobs": None,
        }
        if reply.logprobs is not None:
            choice["logprobs"] = {
                "content": [
                    {"token": f"t{j}", "logprob": lp, "bytes": None, "top_logprobs": []}
                    for j, lp in enumerate(reply.logprobs[i])
                ]
            }
        choices.append(choice)
    completion_tokens = reply.completion_tokens * len(choices)
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fault"),
        "choices": choices,
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": reply.prompt_tokens + completion_tokens,
        },
    }
