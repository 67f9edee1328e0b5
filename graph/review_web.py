"""A small local web page for expert review: ``python -m graph.review --web``.

It lists the runs waiting for an expert, draws their grids in the ARC colours, takes a reply
(accept a candidate, give the answer, or give a note) and resumes the run, all through the same
:class:`graph.review.Reviewer` as the terminal session. Standard library only (``http.server``).

Security (NOTES: Security; Jupyter Server's token + host check is the model):

- bound to ``127.0.0.1`` by default, where no token is needed; bound to any other address it
  refuses to start without a token (``--token-file``, ``MOCKINGBIRD_REVIEW_TOKEN_FILE`` or
  ``MOCKINGBIRD_REVIEW_TOKEN``: never on the command line, where ``ps`` shows it to everyone);
- the token is accepted from ``?token=`` (then moved into an ``HttpOnly; SameSite=Strict``
  cookie and the address redirected without it), a cookie, or ``Authorization: Token ...``,
  and always compared with :func:`hmac.compare_digest`;
- the ``Host`` header must name a loopback address or the bound one (DNS rebinding: a page on
  ``evil.example`` that re-resolves to 127.0.0.1 still sends ``Host: evil.example``);
- a POST must come from the page itself: ``Sec-Fetch-Site`` (when sent) is ``same-origin`` or
  ``none`` and ``Origin`` (when sent) is this server's own;
- request logs never carry the token (query strings are dropped and the token is masked).
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from graph.errors import InvalidInputError, SettingsError
from graph.trace import ARC_COLOURS
from models.base import ModelError

if TYPE_CHECKING:
    from rich.console import Console

    from graph.reviewer import Reviewer, WaitingRun
    from graph.runner import QueryResult

log = logging.getLogger(__name__)

COOKIE = "mockingbird_review_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
#: No scripts at all; inline styles only; forms post back here only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
MAX_BODY = 256 * 1024  # a reply is a grid at most; refuse anything much larger


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) is this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` -> ``::1``), lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class ReviewServer(ThreadingHTTPServer):
    """The HTTP server, holding the reviewer and the access rules."""

    daemon_threads = True

    def __init__(
        self, reviewer: Reviewer, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
        expert: str = "anonymous", allowed_hosts: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        if token is not None and not token.strip():
            raise SettingsError("--token: must not be empty")
        if token is None and not is_loopback(host):
            # Never open to other machines without one. Refused rather than generated: a made-up
            # token would have to be printed, and a service's output often ends up in logs.
            raise SettingsError(
                f"--host {host}: not a loopback address, so a token is needed; give --token-file "
                "(or MOCKINGBIRD_REVIEW_TOKEN), e.g. written by python -c 'import secrets; "
                "print(secrets.token_urlsafe(24))' > token"
            )
        self.reviewer = reviewer
        self.token = token
        self.expert = expert
        self.bound_host = host
        self.allowed_hosts = {*LOOPBACK_NAMES, *(h.lower() for h in allowed_hosts)}
        if host not in WILDCARDS:
            self.allowed_hosts.add(host.lower())
        self.results: dict[str, QueryResult] = {}  # recent resumes, shown after the redirect
        self.results_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6  # an IPv6 address such as ::1
        try:
            super().__init__((host, port), ReviewHandler)
        except OSError as exc:
            raise SettingsError(f"--host/--port: cannot listen on {host}:{port}: {exc}") from None

    @property
    def url(self) -> str:
        """The page's address (without the token)."""
        host = self.bound_host if self.bound_host not in WILDCARDS else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.server_address[1]}/"

    def host_allowed(self, header: str | None) -> bool:
        if not header:
            return False
        if self.bound_host in WILDCARDS:
            return True  # listening everywhere: any name may reach it, and the token guards it
        return host_name(header) in self.allowed_hosts

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


class ReviewHandler(BaseHTTPRequestHandler):
    """GET ``/`` (the page), GET ``/api/waiting`` (JSON), POST ``/resume`` (a reply)."""

    server: ReviewServer
    server_version = "mockingbird-review"
    sys_version = ""

    # --- logging without secrets ------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        message = format % args
        message = re.sub(r"\?[^\s\"]*", "", message)  # query strings may carry ?token=
        if self.server.token:
            message = message.replace(self.server.token, "[token]")
        log.info("%s %s", self.address_string(), message)

    # --- access checks ----------------------------------------------------------------------

    def _given_token(self) -> str | None:
        query = parse_qs(urlsplit(self.path).query)
        if "token" in query:
            return query["token"][0]
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("token", "bearer") and value:
            return value.strip()
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        return cookie[COOKIE].value if COOKIE in cookie else None

    def _refuse(self, status: HTTPStatus, why: str) -> None:
        self._send(status, _page("Refused", f"<p class='error'>{html.escape(why)}</p>"))

    def _allowed(self, *, post: bool) -> bool:
        if not self.server.host_allowed(self.headers.get("Host")):
            self._refuse(
                HTTPStatus.FORBIDDEN, "Host not allowed (this page answers on its own address only)."
            )
            return False
        if post:
            site = self.headers.get("Sec-Fetch-Site")
            if site is not None and site not in ("same-origin", "none"):
                self._refuse(HTTPStatus.FORBIDDEN, "Cross-site request refused.")
                return False
            origin = self.headers.get("Origin")
            if origin is not None and origin.lower() != f"http://{self.headers.get('Host', '')}".lower():
                self._refuse(HTTPStatus.FORBIDDEN, "Cross-origin request refused.")
                return False
        if not self.server.token_ok(self._given_token()):
            self._refuse(
                HTTPStatus.UNAUTHORIZED, "A valid token is needed: open the address printed at start."
            )
            return False
        return True

    # --- responses --------------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: str, ctype: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")  # no clickjacking of the reply form
        self.send_header("Content-Security-Policy", CSP)
        # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on the form POST
        self.send_header("Referrer-Policy", "same-origin")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, to: str, headers: dict[str, str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, "", headers={"Location": to, **(headers or {})})

    def do_GET(self) -> None:
        if not self._allowed(post=False):
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if "token" in query:  # first visit with ?token=: keep it in a cookie, drop it from the address
            jar: SimpleCookie = SimpleCookie()
            jar[COOKIE] = query["token"][0]
            jar[COOKIE]["httponly"] = True
            jar[COOKIE]["samesite"] = "Strict"
            jar[COOKIE]["path"] = "/"
            self._redirect(parts.path or "/", {"Set-Cookie": jar[COOKIE].OutputString()})
        elif parts.path == "/":
            done = query.get("done", [None])[0]
            with self.server.results_lock:
                result = self.server.results.get(done) if done else None
            self._send(HTTPStatus.OK, self._list_page(result=result))
        elif parts.path == "/api/waiting":
            runs = self.server.reviewer.waiting()
            body = json.dumps([r.model_dump(mode="json") | {"age_s": round(r.age_s, 1)} for r in runs])
            self._send(HTTPStatus.OK, body, "application/json")
        else:
            self._send(HTTPStatus.NOT_FOUND, _page("Not found", "<p>Nothing here. <a href='/'>Back</a></p>"))

    def do_POST(self) -> None:
        if not self._allowed(post=True):
            return
        if urlsplit(self.path).path != "/resume":
            self._send(HTTPStatus.NOT_FOUND, _page("Not found", "<p>Nothing here.</p>"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._refuse(HTTPStatus.BAD_REQUEST, "Bad Content-Length.")
            return
        if not 0 <= length <= MAX_BODY:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Reply too large.")
            return
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
        thread = form.get("thread", "")
        try:
            runs = {r.thread: r for r in self.server.reviewer.waiting(thread=thread)}
            if thread not in runs:
                raise InvalidInputError(f"thread {thread or '(none)'}: not waiting for an expert")
            reply = reply_from_form(form, runs[thread], default_expert=self.server.expert)
            result = self.server.reviewer.resume(thread, reply)
        except InvalidInputError as exc:
            self._send(HTTPStatus.BAD_REQUEST, self._list_page(error=str(exc)))
            return
        except ModelError as exc:  # e.g. re-predicting after a note: the run keeps waiting
            log.warning("thread %s: model call failed while resuming: %s", thread, exc)
            self._send(
                HTTPStatus.BAD_GATEWAY,
                self._list_page(error=f"model call failed: {exc}; the run still waits, try again"),
            )
            return
        except Exception as exc:  # never an empty response: say what failed, keep the run
            log.exception("thread %s: resuming failed", thread)
            self._send(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                self._list_page(error=f"resuming failed ({type(exc).__name__}: {exc}); the run still waits"),
            )
            return
        with self.server.results_lock:
            self.server.results[thread] = result
        log.info("thread %s resumed by %s: %s", thread, reply["expert"], result.status)
        self._redirect(f"/?done={_quote(thread)}")

    def _list_page(self, *, result: QueryResult | None = None, error: str | None = None) -> str:
        runs = self.server.reviewer.waiting()
        body = []
        if error:
            body.append(f"<p class='error' id='error'>✘ {html.escape(error)}</p>")
        if result is not None:
            verdict = {True: "correct", False: "wrong", None: "no target"}[result.correct]
            body.append(
                f"<div class='done' id='done'>✔ thread <b>{html.escape(result.thread_id or '')}</b> "
                f"resumed: {html.escape(result.status)}, strategy {html.escape(result.strategy)}, "
                f"confidence {result.confidence:.2f} ({verdict}). Answer: "
                f"{render_html(result.answer, 'grid' if _is_grid(result.answer) else 'json')}</div>"
            )
        body.append(f"<h2 id='count'>{len(runs)} run(s) waiting for an expert</h2>")
        body.extend(_run_html(run, self.server.expert) for run in runs)
        return _page("Mockingbird review", "\n".join(body))


def reply_from_form(form: dict[str, str], run: WaitingRun, *, default_expert: str) -> dict[str, Any]:
    """The form's fields as a reply (validated by the expert node's rules before resuming)."""
    from graph.expert_reply import parse_reply

    action = form.get("action", "")
    expert = form.get("expert", "").strip() or default_expert
    reply: dict[str, Any] = {"action": action, "expert": expert}
    if action == "accept":
        raw = form.get("candidate", "")
        if not raw.isdigit():
            raise InvalidInputError(f"candidate: choose a candidate number (got {raw!r})")
        reply["candidate"] = int(raw)
    elif action == "answer":
        raw = form.get("answer", "").strip()
        try:
            reply["answer"] = json.loads(raw)
        except json.JSONDecodeError as exc:
            if run.task_kind != "text" or not raw:
                raise InvalidInputError(f"answer: not valid JSON ({exc.msg} at column {exc.colno})") from None
            reply["answer"] = raw  # a text answer may be typed without quotes
    elif action == "note":
        reply["note"] = form.get("note", "")
    parse_reply(reply, run.review)
    return reply


# --- HTML -----------------------------------------------------------------------------------


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _is_grid(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, list) for r in value)


def render_html(value: Any, kind: str) -> str:
    """A value as HTML: grids as tables of coloured cells, others as escaped JSON."""
    if value is None:
        return "<i class='none'>(no answer)</i>"
    if kind == "grid" and _is_grid(value):
        rows = []
        for row in value:
            cells = "".join(
                f"<td style='background:{ARC_COLOURS[c] if isinstance(c, int) and 0 <= c <= 9 else '#fff'}'"
                f" title='{html.escape(str(c))}'>{html.escape(str(c))}</td>"
                for c in row
            )
            rows.append(f"<tr>{cells}</tr>")
        return f"<table class='grid'>{''.join(rows)}</table>"
    text = value if isinstance(value, str) else json.dumps(value)
    return f"<code>{html.escape(text)}</code>"


def _run_html(run: WaitingRun, expert: str) -> str:
    from graph.reviewer import age_text

    review, kind = run.review, run.task_kind
    fn = review.get("function") or {}
    demos = "".join(
        f"<tr><td>{i}</td><td>{render_html(d.get('input'), kind)}</td><td>→</td>"
        f"<td>{render_html(d.get('output'), kind)}</td></tr>"
        for i, d in enumerate(review.get("demos", []))
    )
    cands = review.get("candidates", [])
    cand_rows = "".join(
        f"<tr><td>{i}</td><td>{render_html(c.get('answer'), kind)}</td><td>{c.get('votes')}</td>"
        f"<td>{float(c.get('share', 0)):.2f}</td></tr>"
        for i, c in enumerate(cands)
    )
    options = "".join(
        f"<option value='{i}'>{i}</option>" for i, c in enumerate(cands) if c.get("answer") is not None
    )
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in review.get("notes", []))
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in review.get("reasons", []))
    t = html.escape(run.thread, quote=True)
    accept = (
        f"<label><input type='radio' name='action' value='accept' checked> accept candidate "
        f"<select name='candidate'>{options}</select></label>"
        if options
        else ""
    )
    return f"""
<section class='run' data-thread='{t}'>
  <h3>thread <code>{html.escape(run.thread)}</code> · task <b>{html.escape(run.task_id)}</b>
      · waiting {age_text(run.age_s)}</h3>
  <p><b>{html.escape(str(fn.get("signature") or fn.get("name", "")))}</b>
     <i>{html.escape(str(fn.get("docstring") or ""))}</i></p>
  {f"<ul class='notes'>{notes}</ul>" if notes else ""}
  <table class='demos'><tr><th>#</th><th>input</th><th></th><th>output</th></tr>{demos}</table>
  <div class='query'><b>query</b> {render_html(run.query, kind)}</div>
  <table class='cands'><tr><th>#</th><th>candidate</th><th>votes</th><th>share</th></tr>{cand_rows}</table>
  <ul class='reasons'>{reasons}</ul>
  <form method='post' action='/resume'>
    <input type='hidden' name='thread' value='{t}'>
    {accept}
    <label><input type='radio' name='action' value='answer' {"" if options else "checked"}>
      answer (JSON) <textarea name='answer' rows='2' cols='40'></textarea></label>
    <label><input type='radio' name='action' value='note'> note (a rule or hint)
      <textarea name='note' rows='2' cols='40'></textarea></label>
    <label>expert <input name='expert' value='{html.escape(expert, quote=True)}'></label>
    <button type='submit'>Resume run</button>
  </form>
</section>"""


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
.run {{ border: 1px solid #ccc; border-radius: 6px; padding: 0 1em 1em; margin: 1em 0; }}
table.grid {{ border-collapse: collapse; display: inline-table; vertical-align: middle; }}
table.grid td {{ width: 1.4em; height: 1.4em; text-align: center; font-size: 0.7em; color: #fff;
                 border: 1px solid #555; }}
.error {{ color: #b00; font-weight: bold; }} .done {{ color: #060; margin: 1em 0; }}
label {{ display: block; margin: 0.4em 0; }} .reasons {{ color: #806; }}
</style></head><body><h1>{html.escape(title)}</h1>
{body}
</body></html>"""


def serve(
    reviewer: Reviewer, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
    expert: str = "anonymous", console: Console | None = None,
) -> None:  # fmt: skip
    """Serve the review page until interrupted (Ctrl-C)."""
    from rich.console import Console
    from rich.text import Text

    server = ReviewServer(reviewer, host=host, port=port, token=token, expert=expert)

    # The token is never printed: it came from the person who started the server, and output
    # like this often ends up in logs.
    how = (
        f" (open {server.url}?token=<your token> once; Ctrl-C stops it)"
        if server.token
        else " (Ctrl-C stops it)"
    )
    (console or Console(stderr=True)).print(
        Text.assemble("Review page: ", (server.url, "bold"), how), soft_wrap=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
