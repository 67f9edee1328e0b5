"""scikit-learn baselines for tables, fitted on exactly the demonstrations the model saw.

``python -m graph.bench --baselines knn,logreg,gbm`` (classification) or ``knnreg,ridge``
(regression) fits each baseline on a task's demonstrations and answers the same queries the
strategies answer; the results are runs like a strategy's (:class:`graph.runner.QueryResult`
per query), so the bench summarises them the same way. Preprocessing, fitted on the
demonstrations only: numeric features standardised (missing values imputed with the median),
categorical features one-hot encoded (missing as its own category, unseen categories ignored).

scikit-learn is optional: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graph.errors import SettingsError
from graph.runner import QueryResult
from tasks.schema import Task
from tasks.scoring import is_correct, is_regression

#: Baseline name -> (task type it applies to, what it is).
BASELINES: dict[str, tuple[str, str]] = {
    "knn": ("classification", "3-nearest-neighbours classifier"),
    "logreg": ("classification", "logistic regression (L2, C=1)"),
    "gbm": ("classification", "gradient boosting (100 trees of depth 3)"),
    "majority": ("classification", "the most frequent demonstration label"),
    "knnreg": ("regression", "3-nearest-neighbours regressor"),
    "ridge": ("regression", "ridge regression (alpha=1)"),
    "mean": ("regression", "the mean demonstration label"),
}


def parse_baselines(raw: str | None) -> list[str]:
    """The comma-separated ``--baselines`` list, checked (scikit-learn must be installed).

    Raises:
        SettingsError: An unknown name, or scikit-learn missing.
    """
    names = [s.strip() for s in (raw or "").split(",") if s.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise SettingsError(
            f"--baselines: unknown {', '.join(unknown)}; expected some of {', '.join(BASELINES)}"
        )
    if names:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise SettingsError('--baselines: needs scikit-learn (pip install -e ".[bench]")') from None
    return list(dict.fromkeys(names))


def _estimator(name: str, n_train: int) -> Any:
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    factories: dict[str, Callable[[], Any]] = {
        "knn": lambda: KNeighborsClassifier(n_neighbors=min(3, n_train)),
        "logreg": lambda: LogisticRegression(max_iter=2000),
        "gbm": lambda: GradientBoostingClassifier(random_state=0),
        "majority": lambda: DummyClassifier(strategy="most_frequent"),
        "knnreg": lambda: KNeighborsRegressor(n_neighbors=min(3, n_train)),
        "ridge": lambda: Ridge(alpha=1.0),
        "mean": lambda: DummyRegressor(strategy="mean"),
    }
    return factories[name]()


def _features(task: Task) -> tuple[list[str], list[str]]:
    """Numeric and categorical columns, from the demonstrations and queries."""
    rows = [e.input for e in task.train] + [q.input for q in task.test]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    numeric, categorical = [], []
    for c in columns:
        values = [r.get(c) for r in rows if r.get(c) is not None]
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            numeric.append(c)
        else:
            categorical.append(c)
    return numeric, categorical


class _Prep:
    """Median-impute and standardise numeric columns, one-hot encode the others (fitted on demonstrations)."""

    def __init__(self, task: Task) -> None:
        self.numeric, self.categorical = _features(task)

    def _split(self, rows: list[dict[str, Any]]) -> tuple[Any, Any]:
        import numpy as np

        num = np.array(
            [[np.nan if r.get(c) is None else float(r[c]) for c in self.numeric] for r in rows], dtype=float
        ).reshape(len(rows), len(self.numeric))
        cat = np.array(
            [["<missing>" if r.get(c) is None else str(r[c]) for c in self.categorical] for r in rows],
            dtype=object,
        ).reshape(len(rows), len(self.categorical))
        return num, cat

    def fit_transform(self, rows: list[dict[str, Any]]) -> Any:
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        num, cat = self._split(rows)
        self.num_pipe = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
        )
        self.cat_pipe = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        if self.numeric:
            self.num_pipe.fit(num)
        if self.categorical:
            self.cat_pipe.fit(cat)
        return self.transform(rows)

    def transform(self, rows: list[dict[str, Any]]) -> Any:
        import numpy as np

        num, cat = self._split(rows)
        blocks = [np.zeros((len(rows), 0))]
        if self.numeric:
            blocks.append(self.num_pipe.transform(num))
        if self.categorical:
            blocks.append(self.cat_pipe.transform(cat))
        return np.hstack(blocks)


def run_baseline(name: str, task: Task, indices: list[int]) -> list[QueryResult]:
    """Fit baseline ``name`` on ``task``'s demonstrations; answer its queries at ``indices``.

    Labels are fitted as their JSON text, so predictions come back as the file's labels exactly.
    ``seconds`` per query is the fit's time shared over the queries plus the prediction's.
    """
    import json

    import numpy as np

    started = time.perf_counter()
    regression = is_regression(task)
    prep = _Prep(task)
    x_train = prep.fit_transform([e.input for e in task.train])
    if regression:
        y_train: Any = np.array([float(e.output) for e in task.train])
    else:
        y_train = np.array([json.dumps(e.output, sort_keys=True) for e in task.train])
    model = _estimator(name, len(task.train))
    single_class = not regression and len(set(y_train.tolist())) < 2
    if not single_class:
        model.fit(x_train, y_train)
    queries = [task.test[i] for i in indices]
    if single_class:
        raw = [y_train[0]] * len(queries)
    else:
        raw = list(model.predict(prep.transform([q.input for q in queries]))) if queries else []
    per_query = (time.perf_counter() - started) / max(len(queries), 1)
    results = []
    for i, q, p in zip(indices, queries, raw, strict=True):
        answer = float(p) if regression else json.loads(str(p))
        results.append(
            QueryResult(
                task_id=task.id,
                task_type=task.type,
                query_index=i,
                answer=answer,
                target=q.target,
                correct=None if q.target is None else is_correct(task, answer, q.target),
                confidence=0.0,
                strategy=name,
                reason=BASELINES[name][1],
                seconds=round(per_query, 6),
                resumed="",
                status="done",
                review=None,
                expert=None,
            )
        )
    return results


def applies(name: str, task: Task) -> bool:
    """Whether baseline ``name`` fits ``task``'s type (classifiers on classes, regressors on numbers)."""
    return (BASELINES[name][0] == "regression") == is_regression(task)


#: scikit-learn's bundled tables: name -> (loader, label column, task type).
SKLEARN_TABLES = {
    "iris": ("load_iris", "class", "classification"),
    "wine": ("load_wine", "class", "classification"),
    "breast_cancer": ("load_breast_cancer", "class", "classification"),
    "diabetes": ("load_diabetes", "target", "regression"),
}


def write_sklearn_tables(out: Path) -> list[Path]:
    """Write scikit-learn's bundled tables as CSV files: ``out/classification/*.csv`` (label
    ``class``, the class names) and ``out/regression/diabetes.csv`` (label ``target``).

    They are the issue's reference tables; they are never committed (scikit-learn ships them).
    """
    import csv

    from sklearn import datasets

    written = []
    for name, (loader, label, kind) in SKLEARN_TABLES.items():
        data = getattr(datasets, loader)()
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.csv"
        names = getattr(data, "target_names", None)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([c.replace(" ", "_") for c in data.feature_names] + [label])
            for row, y in zip(data.data, data.target, strict=True):
                value = str(names[int(y)]) if kind == "classification" and names is not None else float(y)
                writer.writerow([*(float(v) for v in row), value])
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m graph.baselines --write-tables DIR``: scikit-learn's tables as CSV files."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m graph.baselines", description=main.__doc__)
    parser.add_argument("--write-tables", type=Path, required=True, metavar="DIR")
    args = parser.parse_args(argv)
    try:
        for path in write_sklearn_tables(args.write_tables):
            print(path)
    except ImportError:
        print('error: scikit-learn is missing: pip install -e ".[bench]"', file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
