"""Family ``fuzz``: broken task files through ``python -m graph.run --task``.

A seeded corpus of files that are each broken by construction: truncated JSON, wrong types,
ragged, huge or empty grids, colours out of range, odd encodings (UTF-16, Latin-1, NUL bytes,
binary), nesting deep enough to break the parser, integers too long to convert, broken CSV and
JSONL, things that are not files at all, and a 200 MB file. Each runs through the real CLI in a
child process. It survives when the CLI exits 2 with exactly one ``error:`` line on stderr that
names the file, no traceback, and the process's peak memory grew by less than
:data:`MAX_GROWTH_MB` (the 200 MB file must be refused before it is read).
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graph.chaos import Env, FamilyReport
from graph.chaos.procs import Children, scratch_dir
from graph.chaos.tiny import mirror_task

#: Peak memory a refused file may cost the process (MiB).
MAX_GROWTH_MB = 256.0
BIG_FILE_BYTES = 200 * 1024 * 1024


def _native() -> dict[str, Any]:
    return mirror_task().model_dump(mode="json", exclude={"source"})


def _arc() -> dict[str, Any]:
    task = mirror_task()
    return {
        "train": [{"input": e.input, "output": e.output} for e in task.train],
        "test": [{"input": q.input, "output": q.target} for q in task.test],
    }


def _bbh() -> dict[str, Any]:
    return {"examples": [{"input": f"q{i}", "target": str(i % 2)} for i in range(6)]}


def _set(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _dump(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


Maker = Callable[[random.Random, Path], object]


def corpus() -> list[tuple[str, str, Maker]]:
    """(name, file name, writer) for every broken file; writers get a seeded RNG and the path."""

    def write(data: bytes) -> Maker:
        return lambda rng, p: p.write_bytes(data)

    def json_of(data: Any) -> Maker:
        return write(_dump(data))

    def truncated(base: dict[str, Any]) -> Maker:
        blob = _dump(base)
        return lambda rng, p: p.write_bytes(blob[: rng.randint(1, len(blob) - 1)])

    def bit_flips(base: dict[str, Any]) -> Maker:
        def make(rng: random.Random, p: Path) -> None:
            blob = bytearray(_dump(base))
            for _ in range(3):  # a structural byte turned into garbage: never still valid
                i = rng.choice([j for j, b in enumerate(blob) if chr(b) in '{}[]:,"'])
                blob[i] = rng.choice(b"\x00\xff#@")
            p.write_bytes(bytes(blob))

        return make

    def big(rng: random.Random, p: Path) -> None:
        with p.open("wb") as f:  # sparse: 200 MB to anyone who reads it, no disk used
            f.write(b'{"train": [')
            f.truncate(BIG_FILE_BYTES)

    def fifo(rng: random.Random, p: Path) -> None:
        os.mkfifo(p)

    def folder(rng: random.Random, p: Path) -> None:
        p.mkdir()
        (p / "good.json").write_bytes(_dump(_native()))
        (p / "sub").mkdir()
        (p / "sub" / "bad.json").write_bytes(_dump(_set(_native(), ["train", 0, "output"], [[1, 2], [3]])))

    native, arc = _native(), _arc()
    cases: list[tuple[str, str, Maker]] = [
        ("truncated task JSON", "t.json", truncated(native)),
        ("truncated ARC JSON", "a.json", truncated(arc)),
        ("truncated BBH JSON", "b.json", truncated(_bbh())),
        ("garbage bytes in task JSON", "t.json", bit_flips(native)),
        ("empty file", "t.json", write(b"")),
        ("only whitespace", "t.json", write(b" \n\t\n")),
        ("JSON null", "t.json", write(b"null")),
        ("JSON number", "t.json", write(b"42")),
        ("empty list of tasks", "t.json", write(b"[]")),
        ("train is a string", "t.json", json_of(_set(native, ["train"], "x"))),
        ("train item is a number", "t.json", json_of(_set(native, ["train", 0], 5))),
        ("id is a number", "t.json", json_of(_set(native, ["id"], 5))),
        ("unknown kind", "t.json", json_of(_set(native, ["kind"], "graph"))),
        ("function is a list", "t.json", json_of(_set(native, ["function"], []))),
        ("unknown field", "t.json", json_of(_set(native, ["trian"], []))),
        ("cell is a string", "t.json", json_of(_set(native, ["train", 0, "input"], [["1", 2]]))),
        ("cell is a float", "t.json", json_of(_set(native, ["train", 0, "input"], [[1.5, 2]]))),
        ("cell is a bool", "t.json", json_of(_set(native, ["train", 0, "input"], [[True, 2]]))),
        ("grid nested too deep", "t.json", json_of(_set(native, ["train", 0, "input"], [[[1]]]))),
        ("ragged grid", "t.json", json_of(_set(native, ["train", 1, "output"], [[1, 2], [3]]))),
        ("empty grid", "t.json", json_of(_set(native, ["test", 0, "input"], []))),
        ("empty row", "t.json", json_of(_set(native, ["test", 0, "input"], [[]]))),
        ("ARC ragged grid", "a.json", json_of(_set(arc, ["test", 0, "input"], [[1], [1, 2]]))),
        ("huge grid 2000 x 2000", "a.json", json_of(_set(arc, ["train", 0, "input"], [[0] * 2000] * 2000))),
        ("huge row of 200,000 cells", "a.json", json_of(_set(arc, ["train", 0, "input"], [[1] * 200_000]))),
        ("colour 10", "a.json", json_of(_set(arc, ["train", 0, "input"], [[10, 1]]))),
        ("colour -1", "a.json", json_of(_set(arc, ["train", 0, "output"], [[-1, 1]]))),
        ("colour 1e9", "a.json", json_of(_set(arc, ["train", 0, "output"], [[10**9]]))),
        ("colour NaN", "a.json", write(_dump(arc).replace(b"[[0,1,2,0]]", b"[[NaN,1,2,0]]", 1))),
        ("colour Infinity", "a.json", write(_dump(arc).replace(b"[[0,1,2,0]]", b"[[Infinity,1,2,0]]", 1))),
        (
            "integer of 5000 digits",
            "a.json",
            write(_dump(arc).replace(b"[[0,1,2,0]]", b"[[" + b"7" * 5000 + b"]]", 1)),
        ),
        ("nesting 100,000 deep", "t.json", write(b"[" * 100_000 + b"]" * 100_000)),
        ("UTF-16 with BOM", "t.json", write(json.dumps(native).encode("utf-16"))),
        ("UTF-32", "t.json", write(json.dumps(native).encode("utf-32"))),
        ("Latin-1 accent", "t.json", write(_dump(native).replace(b"mirror", "mirrör".encode("latin-1"), 1))),
        ("NUL bytes", "t.json", write(_dump(native)[:20] + b"\x00" * 16 + _dump(native)[20:])),
        ("gzip-compressed JSON", "t.json", write(gzip.compress(_dump(native)))),
        ("random binary", "t.json", lambda rng, p: p.write_bytes(rng.randbytes(4096))),
        ("BBH with too few examples", "b.json", json_of({"examples": [{"input": "q", "target": "a"}]})),
        ("BBH target missing", "b.json", json_of({"examples": [{"input": "q"}] * 5})),
        ("CSV ragged row", "t.csv", write(b"x,y,label\n1,2,a\n3,b\n4,5,c\n6,7,d\n8,9,e\n")),
        # (a CSV of two columns is a valid table: the last column is the label, by the loader's rule)
        ("CSV with one column (a label, no features)", "t.csv", write(b"a\n1\n3\n5\n7\n9\n")),
        ("CSV duplicate header", "t.csv", write(b"x,x,label\n1,2,a\n3,4,b\n5,6,c\n7,8,d\n")),
        ("CSV field over the csv limit", "t.csv", write(b'x,label\n"' + b"a" * 200_000 + b'",1\n')),
        ("CSV header only", "t.csv", write(b"x,label\n")),
        ("JSONL line not an object", "t.jsonl", write(b'{"x": 1, "label": 0}\n[1, 2]\n')),
        ("JSONL broken line", "t.jsonl", write(b'{"x": 1, "label": 0}\n{"x": \n')),
        ("JSONL nesting 100,000 deep", "t.jsonl", write(b"[" * 100_000 + b"\n")),
        ("unknown extension", "t.txt", json_of(native)),
        ("no such file", "missing.json", lambda rng, p: None),
        ("a folder named .json", "t.json", lambda rng, p: p.mkdir()),
        ("a FIFO named .json", "t.json", fifo),
        ("a folder with one broken file", "tasks", folder),
        ("200 MB file", "big.json", big),
        ("a row of 1000 x 11 cells", "a.json", json_of(_set(arc, ["train", 0, "input"], [[1] * 11] * 1000))),
    ]
    return cases


def run(env: Env) -> FamilyReport:
    """Every broken file through ``python -m graph.run --task FILE`` in a child process."""
    rec = env.recorder("fuzz")
    rng = random.Random(env.seed)
    children = Children(env.workdir)
    items = corpus()
    rng.shuffle(items)
    if env.quick:
        must = {"200 MB file", "nesting 100,000 deep", "huge grid 2000 x 2000", "UTF-16 with BOM"}
        items = [c for c in items if c[0] in must] + [c for c in items if c[0] not in must][:8]
    for name, filename, make in items:
        if not rec.budget.allows(5):
            rec.report.skipped += 1
            continue
        with rec.case(name) as out:
            case_dir = scratch_dir(env.workdir, "fuzz-")
            path = case_dir / filename
            make(rng, path)
            spec = {
                "module": "graph.run",
                "argv": [
                    "--task",
                    str(path),
                    "--model",
                    "openai:unused",
                    "--quiet",
                    "--db",
                    str(case_dir / "mb.sqlite"),
                ],
                # A file that loaded after all would reach the model: a closed port, exit 1, not 2.
                "env": {
                    "OPENAI_API_KEY": "sk-unused",
                    "MOCKINGBIRD_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                },
            }
            child = children.run("graph.chaos.worker:cli_case", spec, timeout_s=60)
            out["ok"], out["detail"] = _judge(child, path)
    return rec.report


def _judge(child: Any, path: Path) -> tuple[bool, str]:
    lines = child.error_lines
    problems = []
    if child.timed_out:
        problems.append("still running after 60s")
    elif child.exitcode != 2:
        problems.append(f"exit {child.exitcode} (expected 2)")
    if "Traceback" in child.stderr:
        problems.append("traceback")
    if len(lines) != 1 or not lines[0].startswith("error:"):
        problems.append(f"{len(lines)} stderr lines: {' | '.join(lines)[-200:]}")
    elif path.name not in lines[0]:
        problems.append(f"the error does not name the file: {lines[0]}")
    grown = (child.result or {}).get("peak_growth_mb")
    if grown is not None and grown > MAX_GROWTH_MB:
        problems.append(f"peak memory grew {grown:.0f} MiB (limit {MAX_GROWTH_MB:.0f})")
    mem = f", +{grown:.0f} MiB" if grown is not None else ""
    if problems:
        return False, "; ".join(problems) + mem
    return True, lines[0][:160] + mem
