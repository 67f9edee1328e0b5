"""``python -m graph.run`` and ``python -m graph.bench`` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.graph.conftest import reverse_task

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    module: str = "graph.run",
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MOCKINGBIRD_", "OPENAI_"))}
    full_env.update({"PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"})
    full_env.update(env or {})
    # never in the checkout (its .env must not leak in): in a scratch folder, removed afterwards
    with tempfile.TemporaryDirectory(prefix="mb-cli-") as scratch:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd or scratch,
            timeout=timeout,
            check=False,
        )


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "reverse.json"
    path.write_text(reverse_task().model_dump_json())
    return path


def test_missing_task_file(tmp_path):
    assert_user_error(
        run_cli("--task", str(tmp_path / "nope.json"), "--db", str(tmp_path / "db")), "nope.json"
    )


def test_malformed_task_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": [{"input": [[1, 2]], "output": [[1]]}], "test": [{"input": [[1, 99]]}]}')
    assert_user_error(run_cli("--task", str(bad), "--db", str(tmp_path / "db")), "bad.json", "99")


def test_unknown_model(task_file, tmp_path):
    assert_user_error(
        run_cli("--task", str(task_file), "--model", "gpt5", "--db", str(tmp_path / "db")), "gpt5"
    )


def test_openai_model_without_key_never_needs_the_network(task_file, tmp_path):
    assert_user_error(
        run_cli("--task", str(task_file), "--model", "openai:gpt-4o-mini", "--db", str(tmp_path / "db")),
        "OPENAI_API_KEY",
    )


def test_bad_query_json_and_bad_strategy(task_file, tmp_path):
    assert_user_error(
        run_cli("--task", str(task_file), "--query", "[[1,2", "--db", str(tmp_path / "db")), "--query"
    )
    assert_user_error(
        run_cli("--task", str(task_file), "--strategy", "magic", "--db", str(tmp_path / "db")), "magic"
    )
    assert_user_error(
        run_cli("--task", str(task_file), env={"MOCKINGBIRD_SAMPLES": "lots"}), "MOCKINGBIRD_SAMPLES"
    )


def test_query_of_the_wrong_kind(task_file, tiny_checkpoint, tmp_path):
    assert_user_error(
        run_cli(
            "--task",
            str(task_file),
            "--model",
            f"hf:{tiny_checkpoint}",
            "--query",
            '"text"',
            "--db",
            str(tmp_path / "db"),
        ),
        "--query",
        "kind grid",
    )


def test_json_results_and_resume_by_thread(task_file, tiny_checkpoint, tmp_path):
    args = (
        "--task",
        str(task_file),
        "--model",
        f"hf:{tiny_checkpoint}",
        "--samples",
        "2",
        "--strategy",
        "icl",
        "--json",
        "--db",
        str(tmp_path / "db"),
        "--thread",
        "demo",
    )
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    results = json.loads(first.stdout)
    assert [(r["task_id"], r["query_index"], r["strategy"]) for r in results] == [
        ("reverse", 0, "icl"),
        ("reverse", 1, "icl"),
    ]
    assert results[0]["thread_id"] == "demo:reverse:0"
    assert results[0]["target"] == [[9, 8, 0, 7]]
    assert results[0]["correct"] is (results[0]["answer"] == [[9, 8, 0, 7]])  # scored, not just a bool
    assert "Summary" in first.stderr and "chose icl" in first.stderr
    again = json.loads(run_cli(*args).stdout)
    assert [r["resumed"] for r in again] == ["finished earlier"] * 2
    assert [r["answer"] for r in again] == [r["answer"] for r in results]


def test_dotenv_file_configures_the_run(task_file, tiny_checkpoint, tmp_path):
    (tmp_path / ".env").write_text(f"MOCKINGBIRD_MODEL=hf:{tiny_checkpoint}\nMOCKINGBIRD_SAMPLES=1\n")
    proc = run_cli("--task", str(task_file), "--json", "--limit", "1", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 1
    assert (tmp_path / ".mockingbird" / "mockingbird.sqlite").exists()


def test_bench_prints_a_table_and_writes_json(tiny_checkpoint, tmp_path):
    for type_name in ["alpha", "beta"]:
        folder = tmp_path / "tasks" / type_name
        folder.mkdir(parents=True)
        for i in range(2):
            t = reverse_task(f"{type_name}_{i}").model_copy(update={"type": None})
            (folder / f"{type_name}_{i}.json").write_text(t.model_dump_json())
    out = tmp_path / "bench.json"
    proc = run_cli(
        "--tasks",
        str(tmp_path / "tasks"),
        "--model",
        f"hf:{tiny_checkpoint}",
        "--samples",
        "1",
        "--json",
        str(out),
        module="graph.bench",
    )
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(out.read_text())["runs"]
    assert [r["type"] for r in report["rows"]] == ["alpha", "beta"]
    assert report["overall"]["queries"] == 4  # 2 types x 2 tasks x the one query with a target
    assert "overall" in proc.stdout and "95% CI" in proc.stdout
    cal = report["calibration"]
    wrong = sum(1 for r in report["results"] if not r["correct"] and r["confidence"] >= cal["threshold"])
    assert cal["queries"] == 4 and cal["confident_wrong"] == wrong
    assert "calibration" in proc.stdout


def test_bench_compares_models_side_by_side_including_the_random_control(tiny_checkpoint, tmp_path):
    folder = tmp_path / "tasks" / "toy"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(reverse_task("a").model_dump_json())
    out = tmp_path / "bench.json"
    specs = f"hf:{tiny_checkpoint},random:hf:{tiny_checkpoint}"
    proc = run_cli(
        "--tasks",
        str(tmp_path / "tasks"),
        "--model",
        specs,
        "--samples",
        "1",
        "--json",
        str(out),
        module="graph.bench",
    )
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [r["model"] for r in runs] == specs.split(",")
    assert all(r["overall"]["queries"] == 1 for r in runs)
    assert "side by side" in proc.stdout


def test_bench_fails_fast_on_a_bad_model_in_the_list(tmp_path):
    folder = tmp_path / "tasks" / "toy"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(reverse_task("a").model_dump_json())
    proc = run_cli("--tasks", str(tmp_path / "tasks"), "--model", "embedded,nonsense", module="graph.bench")
    assert_user_error(proc, "nonsense")


def test_bench_checks_its_output_paths_before_running(tiny_checkpoint, tmp_path):
    folder = tmp_path / "tasks" / "toy"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(reverse_task("a").model_dump_json())
    common = ("--tasks", str(tmp_path / "tasks"), "--model", f"hf:{tiny_checkpoint}", "--samples", "1")
    proc = run_cli(*common, "--json", str(tmp_path / "missing" / "x.json"), module="graph.bench")
    assert_user_error(proc, "--json", "does not exist")
    assert "overall" not in proc.stdout  # refused before the run, not after it
    proc = run_cli(*common, "--strategy", "icl,select", "--plot", str(tmp_path), module="graph.bench")
    assert_user_error(proc, "--plot", "is a folder")
    assert not (tmp_path / "missing").exists()


def test_ttt_on_an_openai_model_is_refused_before_any_request(task_file, tmp_path):
    proc = run_cli(
        "--task",
        str(task_file),
        "--model",
        "openai:gpt-4o-mini",
        "--strategy",
        "ttt",
        "--db",
        str(tmp_path / "db"),
        env={
            "OPENAI_API_KEY": "sk-test-not-real-000000",
            "MOCKINGBIRD_OPENAI_BASE_URL": "http://127.0.0.1:9",
        },
    )
    assert_user_error(proc, "cannot adapt", "openai:gpt-4o-mini")
    assert "sk-test" not in proc.stderr


def test_ttt_run_shows_training_progress(task_file, tiny_checkpoint, tmp_path):
    proc = run_cli(
        "--task",
        str(task_file),
        "--model",
        f"hf:{tiny_checkpoint}",
        "--strategy",
        "ttt",
        "--ttt-steps",
        "8",
        "--limit",
        "1",
        "--json",
        "--db",
        str(tmp_path / "db"),
    )
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert result["strategy"] == "ttt" and "asked for TTT" in result["reason"]
    assert "training adapter" in proc.stderr and "8/8" in proc.stderr


def test_a_reused_thread_refuses_another_query(task_file, tiny_checkpoint, tmp_path):
    common = ("--task", str(task_file), "--model", f"hf:{tiny_checkpoint}", "--strategy", "icl")
    common += ("--samples", "1", "--db", str(tmp_path / "db"), "--thread", "X", "--json", "--quiet")
    first = run_cli(*common, "--query", "[[1, 2, 0, 0]]")
    assert first.returncode == 0, first.stderr
    assert_user_error(run_cli(*common, "--query", "[[3, 4, 0, 0]]"), "--thread X", "another query")
