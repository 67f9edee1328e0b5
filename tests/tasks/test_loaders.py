"""Loaders on good files and on every kind of malformed file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.errors import TaskFileError
from tasks.loaders import load_any, load_task_dir, load_tasks
from tasks.tabular import TaskSplit

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


ARC = {"train": [{"input": [[0, 1]], "output": [[1, 0]]}], "test": [{"input": [[2, 0]], "output": [[0, 2]]}]}


def test_arc_file(tmp_path):
    [task] = load_tasks(write(tmp_path / "flip" / "flip_3.json", ARC))
    assert (task.id, task.kind, task.type) == ("flip_3", "grid", "flip")
    assert task.train[0].output == [[1, 0]] and task.test[0].target == [[0, 2]]
    assert task.source.endswith("flip_3.json")


def test_bbh_file_k_shot_split(tmp_path):
    data = {"canary": "x", "examples": [{"input": f"q{i}", "target": f"a{i}"} for i in range(5)]}
    [task] = load_tasks(write(tmp_path / "navigate.json", data), TaskSplit(k_shot=2))
    assert task.kind == "text" and task.type == "navigate"
    assert [e.output for e in task.train] == ["a0", "a1"]
    assert [q.target for q in task.test] == ["a2", "a3", "a4"]


def test_csv_file_parses_numbers_and_finds_the_label(tmp_path):
    rows = "sepal,petal,label\n" + "\n".join(f"{i}.5,{i},{'a' if i % 2 else 'b'}" for i in range(6))
    [task] = load_tasks(write(tmp_path / "iris.csv", rows), TaskSplit(k_shot=2, seed=1))
    assert task.kind == "tabular" and len(task.train) == 2 and len(task.test) == 4
    assert set(task.train[0].input) == {"sepal", "petal"}
    assert isinstance(task.train[0].input["sepal"], float) and task.train[0].output in ("a", "b")
    assert task.function.signature == 'predict_label(sepal: float, petal: int) -> Literal["a", "b"]'
    assert task.function.target_type == "classification" and task.type == "iris"
    again = load_tasks(tmp_path / "iris.csv", TaskSplit(k_shot=2, seed=1))[0]
    assert again == task  # the split is reproducible


def test_jsonl_with_named_label_column(tmp_path):
    lines = "\n".join(json.dumps({"x": i, "y2": i * 2}) for i in range(5))
    [task] = load_tasks(write(tmp_path / "double.jsonl", lines), TaskSplit(label_column="y2"))
    assert task.train[0].output == task.train[0].input["x"] * 2


def test_native_single_list_and_wrapped(tmp_path):
    one = {
        "id": "t",
        "kind": "list",
        "function": {"name": "f", "signature": "f(x)"},
        "train": [{"input": [1], "output": [2]}],
        "test": [{"input": [3]}],
    }
    assert load_tasks(write(tmp_path / "a.json", one))[0].id == "t"
    assert len(load_tasks(write(tmp_path / "b.json", [one, {**one, "id": "u"}]))) == 2
    assert load_tasks(write(tmp_path / "c.json", {"tasks": [one]}))[0].kind == "list"


def test_directory_types_from_subfolders(tmp_path):
    write(tmp_path / "alpha" / "x.json", ARC)
    write(tmp_path / "beta" / "deep" / "y.json", ARC)
    write(tmp_path / "README.md", "not a task")
    tasks = load_task_dir(tmp_path)
    assert [(t.id, t.type) for t in tasks] == [("x", "alpha"), ("y", "deep")]
    assert load_any(tmp_path) == tasks


@pytest.mark.parametrize(
    ("name", "content", "field", "fragment"),
    [
        ("empty.json", "  ", None, "empty file"),
        ("broken.json", '{"train": [', None, "invalid JSON"),
        ("noformat.json", {"foo": 1}, None, "unknown format"),
        ("notrain.json", {"test": []}, "train", "missing or not a list"),
        (
            "ragged.json",
            {"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": []},
            "train[0].input",
            "not rectangular",
        ),
        (
            "colour.json",
            {"train": [{"input": [[1, 12]], "output": [[1]]}], "test": []},
            "train[0].input",
            "cell [0][1] is 12",
        ),
        ("pair.json", {"train": [{"input": [[1]]}], "test": []}, "train[0]", "'input' and 'output'"),
        ("bbh.json", {"examples": [{"input": 3, "target": "a"}]}, "examples[0]", "string 'input'"),
        ("few.json", {"examples": [{"input": "q", "target": "a"}]}, "examples", "no test query"),
        ("onelabel.csv", "a,b\n1,2\n3,2\n5,2\n7,2\n", "b", "single value"),
        ("short.csv", "a,label\n1,2\n3\n", "line 3", "has 1 cells"),
        ("bad.jsonl", '{"x": 1, "y": 2}\n[1]\n', "line 2", "expected a JSON object"),
        ("data.txt", "hello", None, "unknown format"),
        (
            "native.json",
            {
                "id": "t",
                "kind": "grid",
                "function": {"name": "f", "signature": "f(x)"},
                "train": [{"input": "text", "output": [[1]]}],
            },
            "train[0]",
            "grid must be",
        ),
    ],
)
def test_malformed_files_are_one_line_errors(tmp_path, name, content, field, fragment):
    path = write(tmp_path / name, content)
    with pytest.raises(TaskFileError) as err:
        load_tasks(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert fragment in message
    if field:
        assert field in message


def test_missing_file_and_folder_and_bad_k_shot(tmp_path):
    with pytest.raises(TaskFileError, match="no such file"):
        load_any(tmp_path / "nope.json")
    with pytest.raises(TaskFileError, match="no task files"):
        load_task_dir(tmp_path)
    with pytest.raises(TaskFileError, match="k_shot: must be at least 1"):
        load_tasks(write(tmp_path / "a.json", ARC), TaskSplit(k_shot=0))


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"train": "\xff"}')
    with pytest.raises(TaskFileError, match="not UTF-8"):
        load_tasks(path)


needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/benchmarks is absent")


@needs_shared
def test_all_shared_1d_arc_tasks_load():
    tasks = load_any(SHARED / "1d-arc")
    assert len(tasks) == 450
    assert len({t.type for t in tasks}) == 9
    assert all(
        len(t.test) >= 1 and t.test[0].target is not None and len(t.train[0].input) == 1 for t in tasks
    )


@needs_shared
def test_shared_bbh_and_arc_agi_load():
    [bbh] = load_tasks(SHARED / "bbh" / "boolean_expressions.json", TaskSplit(k_shot=3))
    assert len(bbh.train) == 3 and len(bbh.test) > 100
    arc = sorted((SHARED / "arc-agi" / "training").glob("*.json"))[:20]
    assert all(load_tasks(p)[0].kind == "grid" for p in arc)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import tasks.loaders

    big = tmp_path / "big.json"
    with big.open("wb") as f:  # sparse: 64 MiB to a reader, no disk used
        f.write(b'{"train": [')
        f.truncate(64 * 2**20)
    read: list[Path] = []
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: read.append(self) or "")
    with pytest.raises(TaskFileError) as err:
        load_tasks(big)
    assert str(err.value) == f"{big}: file is 64.0 MiB, over the 32 MiB limit of task files"
    assert read == []  # refused from its size alone
    monkeypatch.setattr(tasks.loaders, "MAX_TASK_FILE_BYTES", 8)
    small = tmp_path / "small.json"
    small.write_text('{"train": []}')
    with pytest.raises(TaskFileError, match="over the 0 MiB limit"):
        load_tasks(small)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000, "invalid JSON: nested too deeply"),
        ("long.json", '{"train": [{"input": [[' + "7" * 5000 + ']], "output": [[1]]}], "test": []}',
         "invalid JSON: Exceeds the limit (4300 digits)"),
        ("deep.jsonl", "[" * 100_000 + "\n", "line 1: invalid JSON: nested too deeply"),
    ],
)  # fmt: skip
def test_json_that_breaks_the_parser_is_one_line(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TaskFileError) as err:
        load_tasks(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)
