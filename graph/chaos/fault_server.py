"""A scriptable, fault-injecting OpenAI-compatible server on 127.0.0.1.

The one such server of the project: the ``llm`` family's adversary and the OpenAI backend's unit
tests' server. It follows a script of replies (rate limits, quota errors, server errors, auth
failures, slow answers, successes with chosen texts, token counts and log-probs), then answers
every further request with ``default``. Below HTTP it can also reset the connection, hang, send
malformed JSON or a completion with no choices. Every request is recorded (path, headers, parsed
JSON body, arrival time), so a check can count the requests one logical call sent::

    with FaultServer([rate_limited(), ok("[[1]]")]) as server:
        backend = OpenAIBackend("m", base_url=server.base_url, api_key="sk-test")
        backend.generate(prompt)
        assert server.count == 2
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class Fault:
    """One scripted reply.

    Attributes:
        status: HTTP status (200: a completion, unless ``body`` or ``kind`` say otherwise).
        body: A JSON error body; ``None`` on success means "build a completion".
        headers: Extra response headers (``Retry-After``).
        delay_s: Seconds to wait before answering (a hang when longer than the client's time-out;
            a stopping server drops the reply).
        kind: ``reset`` (close the connection with a TCP RST, no reply), ``malformed`` (200 with a
            body that is not JSON), ``empty`` (a completion with no choices), or ``""``.
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
    kind: str = ""
    contents: list[str] | None = None
    content: str = "[[1]]"
    max_choices: int = 1000
    prompt_tokens: int = 11
    completion_tokens: int = 3
    logprobs: list[list[float]] | None = None


def ok(content: str = "[[1]]", **kwargs: Any) -> Fault:
    """A successful completion (``kwargs``: any other :class:`Fault` field)."""
    return Fault(content=content, **kwargs)


def status(code: int, message: str = "error", *, type: str = "", error_code: str = "") -> Fault:
    """An HTTP error ``code`` with an OpenAI-style error body.

    Args:
        code: The HTTP status.
        message: The error's message.
        type: The error's ``type``; by default ``invalid_request_error`` below 500, else ``server_error``.
        error_code: The error's ``code`` field, if any.
    """
    error = {"message": message, "type": type or ("invalid_request_error" if code < 500 else "server_error")}
    if error_code:
        error["code"] = error_code
    return Fault(code, {"error": error})


def rate_limited(retry_after: float | str | None = 1) -> Fault:
    """429 with an optional ``Retry-After`` header (seconds)."""
    fault = status(429, "Rate limit reached", type="requests", error_code="rate_limit_exceeded")
    if retry_after is not None:
        fault.headers["Retry-After"] = str(retry_after)
    return fault


def insufficient_quota() -> Fault:
    """429 that must not be retried: the account is out of credit."""
    message = "You exceeded your current quota, please check your plan and billing details."
    return status(429, message, type="insufficient_quota", error_code="insufficient_quota")


def server_error(code: int = 500) -> Fault:
    """An error ``code`` (a 5xx by default) typed as the server's fault."""
    return status(code, "The server had an error", type="server_error")


def unauthorized(echo: str = "") -> Fault:
    """401; ``echo`` is put into the message, as OpenAI does with (part of) a wrong key."""
    message = f"Incorrect API key provided: {echo}. You can find your API key at the dashboard."
    return status(401, message, error_code="invalid_api_key")


def bad_request(message: str = "Invalid request") -> Fault:
    """400."""
    return status(400, message)


def slow(delay_s: float, content: str = "[[1]]") -> Fault:
    """A success that arrives after ``delay_s`` seconds."""
    return Fault(delay_s=delay_s, content=content)


def hang(seconds: float = 30.0) -> Fault:
    """A reply that takes far longer than any client time-out."""
    return slow(seconds)


def reset() -> Fault:
    """The connection closed with a TCP RST, no reply."""
    return Fault(kind="reset")


def malformed() -> Fault:
    """200 with a body that is not JSON."""
    return Fault(kind="malformed")


def empty_choices() -> Fault:
    """A completion with no choices."""
    return Fault(kind="empty")


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

    def __init__(self, script: list[Fault] | None = None, default: Fault | None = None) -> None:
        self.script = list(script or [])
        self.default = default or ok()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._stop = threading.Event()

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

    def _next(self, recorded: Recorded) -> Fault:
        with self._lock:
            self.requests.append(recorded)
            return self.script.pop(0) if self.script else self.default

    def start(self) -> FaultServer:
        """Bind and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet output
                logger.debug("fault server: " + format, *args)

            def do_GET(self) -> None:
                self._send(404, json.dumps({"error": {"message": "not found"}}).encode(), {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    request = json.loads(raw or b"{}")
                except ValueError:
                    request = {"_raw": raw.decode("utf-8", "replace")}
                headers = {k.lower(): v for k, v in self.headers.items()}
                fault = server._next(Recorded(self.path, headers, request, time.monotonic()))
                if fault.delay_s and server._stop.wait(fault.delay_s):
                    return  # the server is stopping: hanging handlers return at once
                if fault.kind == "reset":
                    # SO_LINGER 0: close() sends RST, the client sees "connection reset by peer"
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault.kind == "malformed":
                    self._send(200, b'{"id": "chatcmpl-x", "choices": [{"message": ', {})
                    return
                if fault.status != 200 or fault.body is not None:
                    self._send(fault.status, json.dumps(fault.body or {}).encode(), fault.headers)
                    return
                self._send(200, json.dumps(_completion(request, fault)).encode(), fault.headers)

            def _send(self, code: int, data: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (time-out) and left
                    logger.debug("fault server: client went away")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="fault-server", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving (hanging handlers return at once) and close the socket."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _completion(request: dict[str, Any], fault: Fault) -> dict[str, Any]:
    """An OpenAI chat completion answering ``request`` as ``fault`` says."""
    if fault.kind == "empty":
        contents: list[str] = []
    elif fault.contents is not None:
        contents = fault.contents
    else:
        contents = [fault.content] * max(1, min(int(request.get("n") or 1), fault.max_choices))
    choices = []
    for i, text in enumerate(contents):
        choice: dict[str, Any] = {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "logprobs": None,
        }
        if fault.logprobs is not None:
            choice["logprobs"] = {
                "content": [
                    {"token": f"t{j}", "logprob": lp, "bytes": None, "top_logprobs": []}
                    for j, lp in enumerate(fault.logprobs[i])
                ]
            }
        choices.append(choice)
    completion_tokens = fault.completion_tokens * len(choices)
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fault"),
        "choices": choices,
        "usage": {
            "prompt_tokens": fault.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": fault.prompt_tokens + completion_tokens,
        },
    }
