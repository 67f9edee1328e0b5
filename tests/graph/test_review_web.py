"""The review web page over real HTTP on 127.0.0.1: each security rule, then the page in Chromium."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from graph.builder import build_graph
from graph.context import Context
from graph.errors import SettingsError
from graph.memory import task_examples
from graph.review_web import ReviewServer
from graph.reviewer import Reviewer
from graph.runner import run_query
from graph.storage import open_checkpointer, open_store
from tests.graph.conftest import ScriptedBackend, reverse_task

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "s3cret-t0ken-for-tests"


def make_waiting(db: Path, threads: tuple[str, ...] = ("w1",)) -> None:
    """Runs that pause for an expert (ICL gave two different answers first)."""
    g = build_graph(model=ScriptedBackend(["0000\n", "9807\n"]), checkpointer=open_checkpointer(db),
                    store=open_store(db))  # fmt: skip
    ctx = Context(strategy="expert", samples=2, sample_views="off")  # two scripted samples that disagree
    for thread in threads:
        r = run_query(g, reverse_task(), 0, context=ctx, thread_id=thread)
        assert r.status == "waiting"


@pytest.fixture
def serve(db: Path) -> Iterator[Any]:
    """Start a review server in this process (real sockets); yields a starter."""
    make_waiting(db)
    servers: list[ReviewServer] = []

    def start(**kwargs: Any) -> ReviewServer:
        server = ReviewServer(Reviewer(db, model=ScriptedBackend(["9807\n"])), port=0, **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def request(
    server: ReviewServer, method: str, path: str, *, headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None, connect: str = "127.0.0.1",
) -> tuple[int, dict[str, str], str]:  # fmt: skip
    """One raw request (http.client sends exactly the Host/Origin headers we give it)."""
    conn = http.client.HTTPConnection(connect, server.server_address[1], timeout=30)
    body = urlencode(form) if form is not None else None
    hdrs = {"Host": f"127.0.0.1:{server.server_address[1]}"} | (headers or {})
    if body is not None:
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=hdrs, encode_chunked=False)
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    conn.close()
    return out


ANSWER = {"thread": "w1", "action": "answer", "answer": "[[9, 8, 0, 7]]", "expert": "ada"}


def test_loopback_needs_no_token_and_lists_the_waiting_run(serve):
    server = serve()
    assert server.token is None
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and "1 run(s) waiting" in body and "w1" in body
    assert "<td style='background:#870C25' title='9'>9</td>" in body  # the query's colour 9, drawn
    assert "default-src 'none'" in headers["content-security-policy"]
    status, _, body = request(server, "GET", "/api/waiting")
    assert status == 200 and [r["thread"] for r in json.loads(body)] == ["w1"]


def test_a_foreign_host_header_is_refused(serve):
    server = serve()
    status, _, body = request(
        server, "GET", "/", headers={"Host": f"evil.example:{server.server_address[1]}"}
    )
    assert status == 403 and "Host not allowed" in body
    status, _, _ = request(server, "POST", "/resume", headers={"Host": "evil.example"}, form=ANSWER)
    assert status == 403
    assert [r.thread for r in server.reviewer.waiting()] == ["w1"]  # nothing was resumed
    assert request(server, "GET", "/", headers={"Host": f"localhost:{server.server_address[1]}"})[0] == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_origin_post_is_refused(serve, headers):
    server = serve()
    status, _, body = request(server, "POST", "/resume", headers=headers, form=ANSWER)
    assert status == 403 and "refused" in body
    assert [r.thread for r in server.reviewer.waiting()] == ["w1"]


def test_a_same_origin_post_resumes_the_run_and_records_the_answer(serve, db):
    server = serve()
    origin = {"Origin": f"http://127.0.0.1:{server.server_address[1]}", "Sec-Fetch-Site": "same-origin"}
    status, headers, _ = request(server, "POST", "/resume", headers=origin, form=ANSWER)
    assert status == 303 and headers["location"] == "/?done=w1"
    _, _, page = request(server, "GET", "/?done=w1")
    assert "0 run(s) waiting" in page and "resumed: done" in page and "(correct)" in page
    assert task_examples(open_store(db), reverse_task().key) == [
        {"input": [[7, 0, 8, 9]], "output": [[9, 8, 0, 7]]}
    ]
    state = open_checkpointer(db).get_tuple({"configurable": {"thread_id": "w1", "checkpoint_ns": ""}})
    assert state is not None and state.checkpoint["channel_values"]["expert"]["expert"] == "ada"


def test_a_bad_reply_is_one_line_and_the_run_keeps_waiting(serve):
    server = serve()
    form = ANSWER | {"answer": "[[9, 8, 0, 12]]"}
    status, _, body = request(server, "POST", "/resume", form=form)
    assert status == 400 and "expert reply: answer: cell [0][3] is 12" in body
    status, _, body = request(server, "POST", "/resume", form=ANSWER | {"thread": "nope"})
    assert status == 400 and "thread nope: not waiting for an expert" in body
    assert [r.thread for r in server.reviewer.waiting()] == ["w1"]


class DownBackend(ScriptedBackend):
    """A model whose server is down: every call fails the way a backend reports it."""

    def generate(self, prompt: Any, **kwargs: Any) -> Any:
        from models.base import ModelError

        raise ModelError("server at http://127.0.0.1:9 refused the connection")


def test_a_model_error_after_a_note_is_shown_and_the_run_keeps_waiting(db):
    make_waiting(db)
    server = ReviewServer(Reviewer(db, model=DownBackend(["x"])), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        note = {"thread": "w1", "action": "note", "note": "mirror the row", "expert": "ada"}
        status, _, body = request(server, "POST", "/resume", form=note)
        assert status == 502
        assert "model call failed: server at http://127.0.0.1:9 refused" in body and "still waits" in body
        assert [r.thread for r in server.reviewer.waiting()] == ["w1"]
    finally:
        server.shutdown()
        server.server_close()
    # nothing lost: with the model back, the same reply resumes the run
    again = Reviewer(db, model=ScriptedBackend(["9807\n"]))
    result = again.resume("w1", {k: v for k, v in note.items() if k != "thread"})
    assert result.status == "done" and result.answer == [[9, 8, 0, 7]] and result.strategy == "expert"


def test_a_token_is_required_when_set_and_compared_exactly(serve):
    server = serve(token=TOKEN)
    assert request(server, "GET", "/")[0] == 401
    assert request(server, "GET", "/api/waiting", headers={"Authorization": "Token wrong"})[0] == 401
    assert request(server, "GET", f"/?token={TOKEN}x")[0] == 401
    assert request(server, "POST", "/resume", form=ANSWER)[0] == 401
    assert request(server, "GET", "/api/waiting", headers={"Authorization": f"Token {TOKEN}"})[0] == 200
    # ?token= moves into an HttpOnly, SameSite=Strict cookie and leaves the address
    status, headers, _ = request(server, "GET", f"/?token={TOKEN}")
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    assert request(server, "GET", "/", headers=jar)[0] == 200
    assert request(server, "POST", "/resume", headers=jar, form=ANSWER)[0] == 303


def test_the_token_never_reaches_the_logs(serve, caplog):
    server = serve(token=TOKEN)
    with caplog.at_level(logging.INFO, logger="graph.review_web"):
        request(server, "GET", f"/?token={TOKEN}")
        request(server, "GET", f"/?token={TOKEN}")
        request(server, "GET", f"/api/waiting?token=wrong&token={TOKEN}")
        request(server, "POST", "/resume", headers={"Authorization": f"Token {TOKEN}"}, form=ANSWER)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET / " in logged and "/api/waiting" in logged and "resumed by ada" in logged
    assert TOKEN not in logged and "token=" not in logged


def test_bound_beyond_loopback_it_needs_a_token(serve, db):
    with pytest.raises(SettingsError, match=r"^--host 0\.0\.0\.0: not a loopback address, so a token"):
        ReviewServer(Reviewer(db), host="0.0.0.0", port=0)
    server = serve(host="0.0.0.0", token=TOKEN)
    assert request(server, "GET", "/", headers={"Host": "my-machine:1"})[0] == 401
    ok = request(server, "GET", "/", headers={"Host": "my-machine:1", "Authorization": f"Token {TOKEN}"})
    assert ok[0] == 200


def test_bound_beyond_loopback_without_a_token_the_cli_refuses_in_one_line(db, tmp_path):
    import subprocess
    import sys

    make_waiting(db)
    proc = subprocess.run(
        [sys.executable, "-m", "graph.review", "--db", str(db), "--web", "--host", "0.0.0.0", "--port", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,  # not the checkout: no .env from there
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: --host 0.0.0.0: not a loopback address, so a token is needed")


def test_the_review_flag_serves_the_page(db, tmp_path):
    """``python -m graph.review --web`` starts, prints its address (with the token) and answers."""
    import subprocess
    import sys

    make_waiting(db)
    root = Path(__file__).resolve().parents[2]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "graph.review", "--db", str(db), "--web", "--port", "0", "--token-file",
         str(token_file)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1", "HOME": str(tmp_path),
             "PYTHONPATH": str(root)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Review page: http://127.0.0.1:") and "?token=<your token>" in line
        assert TOKEN not in line  # the token is the starter's; it is never echoed
        assert TOKEN not in Path(f"/proc/{proc.pid}/cmdline").read_text()  # nor shown by `ps`
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/waiting", headers={"Authorization": f"Token {TOKEN}"})
        assert [r["thread"] for r in json.loads(conn.getresponse().read())] == ["w1"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch, caplog):
    from graph.review import review_token

    assert review_token(None, None) is None
    monkeypatch.setenv("MOCKINGBIRD_REVIEW_TOKEN", "from-env")
    assert review_token(None, None) == "from-env"
    (tmp_path / "t").write_text("  from-file\n")
    monkeypatch.setenv("MOCKINGBIRD_REVIEW_TOKEN_FILE", str(tmp_path / "t"))
    assert review_token(None, None) == "from-file"
    (tmp_path / "u").write_text("from-flag-file")
    assert review_token(str(tmp_path / "u"), None) == "from-flag-file"
    with caplog.at_level(logging.WARNING):
        assert review_token(None, "on-the-command-line") == "on-the-command-line"
    assert "visible to other users in `ps`" in caplog.text and "on-the-command-line" not in caplog.text
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingsError, match=r"^--token-file: .*empty is empty$"):
        review_token(str(tmp_path / "empty"), None)
    with pytest.raises(SettingsError, match=r"^--token-file: cannot read .*nope"):
        review_token(str(tmp_path / "nope"), None)


@contextlib.contextmanager
def chromium_page() -> Iterator[Any]:
    """A page of headless Chromium (15 s time-outs); skips the test where Chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


@pytest.mark.required_in_ci("chromium (apt) and playwright")
def test_the_page_in_headless_chromium_answers_a_run(serve, db):
    make_waiting(db, ("w2",))
    server = serve(token=TOKEN)
    with chromium_page() as page:
        page.goto(f"{server.url}?token={TOKEN}")
        assert page.url == server.url  # the token left the address bar
        assert page.locator("#count").inner_text() == "2 run(s) waiting for an expert"
        run = page.locator("section.run[data-thread='w1']")
        # the query's first cell is colour 7 (orange), drawn as a coloured cell
        cell = run.locator("div.query table.grid td").first
        assert cell.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 133, 27)"
        # a bad answer: the page says what is wrong, nothing is resumed
        run.locator("input[value='answer']").check()
        run.locator("textarea[name='answer']").fill("[[9, 8, 0]] x")
        run.locator("button").click()
        assert "answer: not valid JSON" in page.locator("#error").inner_text()
        # accept candidate 1 (the right one) on the first run, give a note on the second
        run = page.locator("section.run[data-thread='w1']")
        run.locator("select[name='candidate']").select_option("1")
        run.locator("input[name='expert']").fill("grace")
        run.locator("button").click()
        assert "w1 resumed: done" in page.locator("#done").inner_text()
        assert "(correct)" in page.locator("#done").inner_text()
        other = page.locator("section.run[data-thread='w2']")
        other.locator("input[value='note']").check()
        other.locator("textarea[name='note']").fill("Read the row right to left.")
        other.locator("button").click()
        assert page.locator("#count").inner_text() == "0 run(s) waiting for an expert"
    done = open_checkpointer(db)
    w1 = done.get_tuple({"configurable": {"thread_id": "w1", "checkpoint_ns": ""}})
    assert w1 is not None and w1.checkpoint["channel_values"]["expert"] == {
        "action": "accept", "candidate": 1, "expert": "grace"
    }  # fmt: skip


@pytest.mark.required_in_ci("chromium (apt) and playwright")
def test_chromium_refuses_a_form_posted_from_another_origin(serve, tmp_path):
    """A page of another local origin submits a reply form to the review server: refused."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    server = serve()  # loopback, no token: only the origin checks stand in the way
    form = "".join(f"<input type='hidden' name='{k}' value='{v}'>" for k, v in ANSWER.items())
    (tmp_path / "attack.html").write_text(
        f"<form method='post' action='{server.url}resume'>{form}<button id='go'>win</button></form>"
    )
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    other = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(tmp_path)))
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with chromium_page() as page:
            page.goto(f"http://localhost:{other.server_address[1]}/attack.html")
            with page.expect_response(lambda r: r.url.endswith("/resume")) as response:
                page.click("#go")
            assert response.value.status == 403
    finally:
        other.shutdown()
        other.server_close()
    assert [r.thread for r in server.reviewer.waiting()] == ["w1"]


def test_an_ipv6_loopback_bind_needs_no_token(db):
    from graph.errors import SettingsError

    make_waiting(db)
    try:
        server = ReviewServer(Reviewer(db), host="::1", port=0)
    except SettingsError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert server.token is None and server.url.startswith("http://[::1]:")
        assert (
            request(server, "GET", "/", connect="::1", headers={"Host": f"[::1]:{server.server_address[1]}"})[
                0
            ]
            == 200
        )
        assert request(server, "GET", "/", connect="::1", headers={"Host": "evil.example"})[0] == 403
    finally:
        server.shutdown()
        server.server_close()
