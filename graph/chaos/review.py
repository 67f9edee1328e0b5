"""Family ``review``: the expert review page against hostile requests.

A real run waits for an expert in a real database; the page (:class:`graph.review_web.ReviewServer`)
serves it twice: on 127.0.0.1 without a token, and on 127.0.0.1 with one. Raw HTTP requests
then forge ``Host`` headers (DNS rebinding), post from other origins, leave the token out or
get it wrong in every place it is read from; every log record of the page is captured while the
real token travels in query strings, headers and cookies. A case survives when the request is
refused with the right status, the answer shows no run data, the run still waits, and no log
line, redirect or page carries the token. Two controls (the right token; a same-origin reply
that resumes the run) show the refusals come from the checks, not from a broken server.
"""

from __future__ import annotations

import http.client
import logging
import random
import secrets
import threading
from typing import Any
from urllib.parse import urlencode

from graph.chaos import Env, FamilyReport, Recorder
from graph.chaos.procs import Children, scratch_dir, start_waiting_run
from graph.chaos.tiny import build_tiny_checkpoint

THREAD = "review-thread"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    host: str | None = "127.0.0.1",
) -> tuple[int, dict[str, str], str]:
    """One raw request; ``host`` None sends no Host header at all."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host if host != "127.0.0.1" else f"127.0.0.1:{port}")
        data = body.encode() if body is not None else None
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if data is not None:
            conn.putheader("Content-Type", "application/x-www-form-urlencoded")
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        return (
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            resp.read().decode("utf-8", "replace"),
        )
    finally:
        conn.close()


def run(env: Env) -> FamilyReport:
    rec = env.recorder("review")
    children = Children(env.workdir)
    ckpt = build_tiny_checkpoint(env.workdir / "tiny")
    case_dir = scratch_dir(env.workdir, "review-")
    db = case_dir / "mb.sqlite"
    if not start_waiting_run(children, rec, db, ckpt, THREAD, env.seed):
        return rec.report
    from graph.errors import SettingsError
    from graph.review_web import ReviewServer
    from graph.reviewer import Reviewer

    capture = _Capture()
    log = logging.getLogger("graph.review_web")
    old_level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(capture)
    token = secrets.token_urlsafe(24)
    reviewer = Reviewer(db)
    open_server = ReviewServer(reviewer, host="127.0.0.1", port=0, expert="chaos")
    locked = ReviewServer(reviewer, host="127.0.0.1", port=0, token=token, expert="chaos")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (open_server, locked)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(env.seed)
        _host_cases(rec, open_server.server_address[1], rng)
        _origin_cases(rec, open_server.server_address[1], reviewer)
        _token_cases(rec, locked.server_address[1], token, reviewer)
        with rec.case("bound to 0.0.0.0 without a token: refuses to start") as out:
            try:
                ReviewServer(reviewer, host="0.0.0.0", port=0).server_close()
                out["detail"] = "it started, open to the network without a token"
            except SettingsError as exc:
                out["ok"], out["detail"] = True, str(exc)[:120]
        with rec.case("the token in no log line (query, header, cookie requests)") as out:
            leaked = [line for line in capture.lines if token in line]
            out["ok"] = not leaked and bool(capture.lines)
            out["detail"] = (
                f"leaked in: {leaked[:2]}"
                if leaked
                else f"{len(capture.lines)} log lines, none with the token"
            )
        _control(rec, locked.server_address[1], token, reviewer)
    finally:
        for server in (open_server, locked):
            server.shutdown()
            server.server_close()
        log.removeHandler(capture)
        log.setLevel(old_level)
    return rec.report


def _refused(status: int, body: str, want: int) -> tuple[bool, str]:
    if status != want:
        return False, f"HTTP {status} (expected {want})"
    if THREAD in body:
        return False, f"HTTP {status} but the answer shows the waiting run"
    return True, f"HTTP {status}"


def _host_cases(rec: Recorder, port: int, rng: random.Random) -> None:
    hosts = [
        "evil.example",
        f"evil.example:{port}",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        f"evil.example@127.0.0.1:{port}",
        "0.0.0.0",
        "192.168.1.10",
        "",
        None,
    ]
    for host in hosts:
        for path in ("/", "/api/waiting"):
            with rec.case(f"forged Host {host!r}: GET {path}") as out:
                status, _, body = _request(port, "GET", path, host=host)
                out["ok"], out["detail"] = _refused(status, body, 403)


def _reply_body() -> str:
    return urlencode({"thread": THREAD, "action": "answer", "answer": "[[9, 8, 0, 7]]", "expert": "mallory"})


def _still_waiting(reviewer: Any) -> bool:
    return any(r.thread == THREAD for r in reviewer.waiting())


def _origin_cases(rec: Recorder, port: int, reviewer: Any) -> None:
    forged = [
        ({"Origin": "http://evil.example"}, "Origin http://evil.example"),
        ({"Origin": "null"}, "Origin null (sandboxed frame)"),
        ({"Origin": f"http://127.0.0.1:{port + 1}"}, "Origin of another local port"),
        ({"Origin": f"https://127.0.0.1:{port}"}, "Origin with another scheme"),
        ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site same-site (a sibling subdomain)"),
        (
            {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},
            "forged Sec-Fetch-Site, foreign Origin",
        ),
    ]
    for headers, name in forged:
        with rec.case(f"cross-origin POST: {name}") as out:
            status, _, body = _request(port, "POST", "/resume", headers, _reply_body())
            ok, detail = _refused(status, body, 403)
            if ok and not _still_waiting(reviewer):
                ok, detail = False, "refused, but the run was resumed"
            out["ok"], out["detail"] = ok, detail


def _token_cases(rec: Recorder, port: int, token: str, reviewer: Any) -> None:
    wrong = "x" * len(token)
    tries: list[tuple[str, str, str, dict[str, str], str | None]] = [
        ("no token: GET /", "GET", "/", {}, None),
        ("no token: GET /api/waiting", "GET", "/api/waiting", {}, None),
        ("wrong token of the same length", "GET", "/api/waiting?" + urlencode({"token": wrong}), {}, None),
        (
            "the token's first half",
            "GET",
            "/api/waiting?" + urlencode({"token": token[: len(token) // 2]}),
            {},
            None,
        ),
        ("the token plus a character", "GET", "/api/waiting?" + urlencode({"token": token + "x"}), {}, None),
        ("the token in upper case", "GET", "/api/waiting?" + urlencode({"token": token.upper()}), {}, None),
        ("an empty token", "GET", "/api/waiting?token=", {}, None),
        ("wrong Authorization: Token", "GET", "/api/waiting", {"Authorization": f"Token {wrong}"}, None),
        ("wrong cookie", "GET", "/api/waiting", {"Cookie": f"mockingbird_review_token={wrong}"}, None),
        (
            "Authorization with another scheme",
            "GET",
            "/api/waiting",
            {"Authorization": f"Basic {token}"},
            None,
        ),
        (
            "no token: same-origin POST",
            "POST",
            "/resume",
            {"Origin": f"http://127.0.0.1:{port}"},
            _reply_body(),
        ),
        (
            "wrong token: same-origin POST",
            "POST",
            "/resume?" + urlencode({"token": wrong}),
            {"Origin": f"http://127.0.0.1:{port}"},
            _reply_body(),
        ),
    ]
    for name, method, path, headers, body in tries:
        with rec.case(f"token: {name}") as out:
            status, _, text = _request(port, method, path, headers, body)
            ok, detail = _refused(status, text, 401)
            if ok and method == "POST" and not _still_waiting(reviewer):
                ok, detail = False, "refused, but the run was resumed"
            out["ok"], out["detail"] = ok, detail


def _control(rec: Recorder, port: int, token: str, reviewer: Any) -> None:
    with rec.case("control: the right token opens the page; it moves to an HttpOnly cookie") as out:
        status, headers, body = _request(port, "GET", "/?" + urlencode({"token": token}))
        cookie = headers.get("set-cookie", "")
        problems = []
        if status != 303 or token in headers.get("location", ""):
            problems.append(f"HTTP {status}, Location {headers.get('location')!r}")
        if "httponly" not in cookie.lower() or "samesite=strict" not in cookie.lower():
            problems.append(f"cookie {cookie.split(';', 1)[-1]!r}")
        status, _, page = _request(port, "GET", "/", {"Cookie": f"mockingbird_review_token={token}"})
        if status != 200 or THREAD not in page:
            problems.append(f"with the cookie: HTTP {status}, run shown: {THREAD in page}")
        if token in page or token in body:
            problems.append("the page shows the token")
        out["ok"], out["detail"] = (
            not problems,
            "; ".join(problems) or "303 to /, HttpOnly SameSite=Strict; 200",
        )
    with rec.case("control: a same-origin reply with the token resumes the run") as out:
        status, headers, _ = _request(
            port,
            "POST",
            "/resume",
            {
                "Origin": f"http://127.0.0.1:{port}",
                "Authorization": f"Token {token}",
                "Sec-Fetch-Site": "same-origin",
            },
            _reply_body(),
        )
        resumed = not _still_waiting(reviewer)
        out["ok"] = status == 303 and resumed and token not in headers.get("location", "")
        out["detail"] = f"HTTP {status}, resumed: {resumed}"
