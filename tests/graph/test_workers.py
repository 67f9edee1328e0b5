"""``graph.bench --workers``: queries in several processes on one database, nothing lost."""

from __future__ import annotations

import json

import pytest

from graph.errors import SettingsError
from graph.workers import parse_workers
from tests.graph.conftest import reverse_task
from tests.graph.test_cli import assert_user_error, run_cli


def test_parse_workers():
    assert parse_workers(None) == []
    assert parse_workers("2") == [2]
    assert parse_workers("1, 2") == [1, 2]
    for bad in ("0", "two", "1,-1", ","):
        with pytest.raises(SettingsError, match="--workers"):
            parse_workers(bad)


@pytest.mark.slow
def test_bench_workers_share_one_database_and_lose_no_update(db, tiny_checkpoint, tmp_path):
    """Two worker processes answer 6 queries on a scratch database of ``db``'s backend; the
    model's running cost sums count every attempt (lost = 0)."""
    folder = tmp_path / "tasks" / "toy"
    folder.mkdir(parents=True)
    for name in "abcdef":
        (folder / f"{name}.json").write_text(reverse_task(name).model_dump_json())
    out = tmp_path / "bench.json"
    args = ["--tasks", str(tmp_path / "tasks"), "--model", f"hf:{tiny_checkpoint}", "--strategy", "icl"]
    args += ["--samples", "1", "--workers", "2", "--json", str(out)]
    proc = run_cli(*args, *([] if str(db).endswith(".sqlite") else ["--db", str(db)]), module="graph.bench",
                   timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(out.read_text())
    rows = payload["throughput"]
    assert [r["workers"] for r in rows] == [2]
    for r in rows:
        assert r["queries"] == 6 and r["evidence_expected"] == 6
        assert r["evidence_stored"] == 6 and r["lost"] == 0
        assert r["queries_per_s"] > 0
    assert [run["variant"] for run in payload["runs"]] == ["icl"]
    assert all(run["overall"]["queries"] == 6 for run in payload["runs"])
    assert "speed-up" in proc.stdout and "workers sharing one database" in proc.stdout


def test_bench_workers_refuses_a_bad_count(tmp_path):
    folder = tmp_path / "tasks" / "toy"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(reverse_task("a").model_dump_json())
    assert_user_error(
        run_cli("--tasks", str(tmp_path / "tasks"), "--workers", "0", module="graph.bench"), "--workers"
    )
