"""A fault-injecting OpenAI-compatible server on 127.0.0.1 (the ``llm`` family's adversary).

It follows a script of replies, then answers every further request with ``default``; it records
every request, so a check can count the requests one logical call sent. Beyond HTTP errors it
can misbehave below HTTP: reset the connection, hang, send malformed JSON or a completion with
no choices. (``tests/models/fault_server.py`` is the unit tests' scriptable server; this one
adds the transport-level faults the suite needs.)
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
        body: A JSON error body.
        headers: Extra headers (``Retry-After``).
        delay_s: Seconds to wait before answering (a hang when longer than the client's time-out).
        kind: ``reset`` (close the connection with a TCP RST, no reply), ``malformed`` (200 with a
            body that is not JSON), ``empty`` (a completion with no choices), or ``""``.
        content: The completion's text.
    """

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    kind: str = ""
    content: str = "[[1, 2]]"


def ok(content: str = "[[1, 2]]") -> Fault:
    return Fault(content=content)


def rate_limited(retry_after: str | None = "1") -> Fault:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Fault(429, {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}, headers)


def quota() -> Fault:
    return Fault(
        429,
        {
            "error": {
                "message": "You exceeded your current quota.",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
        },
    )


def status(code: int, message: str = "error") -> Fault:
    return Fault(
        code,
        {"error": {"message": message, "type": "invalid_request_error" if code < 500 else "server_error"}},
    )


def reset() -> Fault:
    return Fault(kind="reset")


def hang(seconds: float = 30.0) -> Fault:
    return Fault(delay_s=seconds)


def malformed() -> Fault:
    return Fault(kind="malformed")


def empty_choices() -> Fault:
    return Fault(kind="empty")


class FaultServer:
    """A threaded HTTP server on a free port of 127.0.0.1 that follows a script of faults."""

    def __init__(self, script: list[Fault] | None = None, default: Fault | None = None) -> None:
        self.script = list(script or [])
        self.default = default or ok()
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._stop = threading.Event()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _next(self) -> Fault:
        with self._lock:
            self.arrivals.append(time.monotonic())
            return self.script.pop(0) if self.script else self.default

    def start(self) -> FaultServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("fault server: " + format, *args)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    request = json.loads(raw)
                except ValueError:
                    request = {}
                fault = server._next()
                if fault.delay_s and server._stop.wait(fault.delay_s):
                    return
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
                choices = (
                    []
                    if fault.kind == "empty"
                    else [
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": fault.content},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                        for i in range(max(1, int(request.get("n") or 1)))
                    ]
                )
                body = {
                    "id": "chatcmpl-chaos",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request.get("model", "chaos"),
                    "choices": choices,
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                }
                self._send(200, json.dumps(body).encode(), fault.headers)

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
        threading.Thread(target=self._httpd.serve_forever, name="chaos-fault-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()  # hanging handlers return at once
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
