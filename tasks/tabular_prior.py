"""Synthetic tabular tasks drawn from priors (TabPFN-style), for training the embedded model on tables.

Every table comes from a random generating mechanism, drawn per table:

* ``scm``: a random structural causal model as a small random MLP (Hollmann et al., TabPFN): root
  causes flow through 1-3 random layers (random weights, a random activation, Gaussian noise at
  every node); the features and the target are random nodes of the graph, so features are causes,
  effects or siblings of the target;
* ``tree``: a random decision tree over independent features (axis-aligned splits, random leaf
  values);
* ``linear``: a random linear function of the features (the logistic-regression world);
* ``blobs`` (classification only): one Gaussian cluster per class in a few latent factors, the
  features noisy mixtures of them (iris-like tables).

With ``factors_p`` the features of the first three are also noisy mixtures of 1-4 latent factors
that the mechanism maps to the target: real tables have few underlying dimensions behind many
redundant columns, which is what makes them learnable from a few dozen rows.

Then, per table: 1-30 features; a share of irrelevant features (independent noise); a share of
categorical features (a numeric feature cut at random quantiles into 2-6 categories named in a
random order); missing values in some tables; a classification target (2-6 classes cut at
random quantiles of the latent target, so classes are imbalanced, in a random order, with some
label noise) or a regression target (the latent target plus noise, at a random scale). The
demonstrations are drawn as the loaders draw them from a file (:func:`tasks.tabular.stratified_split`),
so training sees what inference sees.

Everything is deterministic per seed: table ``i`` of seed ``s`` is drawn from
``numpy.random.default_rng([s, i])``.

:func:`sample_task` gives a table as a task (seeded demonstrations and queries);
:func:`prompts.tabular.serialize_episode` writes one in the compact format the embedded table
model trains on (``models.train_table``). From the command line, tables can be written as CSV
files (a held-in benchmark folder for ``graph.bench``)::

    python -m tasks.tabular_prior --out /tmp/synthetic_tables --tables 20 --seed 1000
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tasks.schema import Task
from tasks.tabular import stratified_split

MECHANISMS = ("scm", "tree", "linear", "blobs")


@dataclass(kw_only=True)
class PriorConfig:
    """Ranges the prior draws from (every bound inclusive)."""

    features: tuple[int, int] = (1, 30)  # feature columns
    classes: tuple[int, int] = (2, 6)  # classes of a classification target
    regression_p: float = 0.25  # share of regression tables
    demos: tuple[int, int] = (4, 32)  # demonstrations per episode (fewer when the text would not fit)
    queries: int = 1  # query rows after the demonstrations
    mechanisms: tuple[str, ...] = MECHANISMS  # drawn uniformly, unless mechanism_weights says otherwise
    #: relative draw weights by mechanism name (a missing one weighs 1; empty: uniform, the stream
    #: every earlier run drew); e.g. {"linear": 2.0} makes linear tables twice as common as each other
    mechanism_weights: dict[str, float] = field(default_factory=dict)
    irrelevant_max: float = 0.5  # up to this share of features is pure noise
    categorical_p: float = 0.3  # chance a table has categorical features
    categorical_max: float = 0.5  # up to this share of its features then
    missing_p: float = 0.2  # chance a table has missing values
    missing_max: float = 0.1  # up to this share of its cells then
    label_noise_max: float = 0.05  # classification: up to this share of labels flipped
    noise_max: float = 0.3  # regression / latent: noise sd up to this x the signal's sd
    factors_p: float = 0.6  # chance the features are noisy mixtures of a few latent factors
    max_factors: int = 4  # at most this many factors then
    imbalance: tuple[float, float] = (1.0, 8.0)  # Dirichlet concentration of class shares (low = skewed)
    max_chars: int = 1000  # longest episode text (the embedded model's context is 1,024 tokens)

    def __post_init__(self) -> None:
        for name in ("features", "classes", "demos", "imbalance"):
            lo, hi = getattr(self, name)
            if lo > hi or lo <= 0:
                raise ValueError(f"{name}: expected 0 < low <= high, got {(lo, hi)}")
        if self.classes[0] < 2:
            raise ValueError("classes: at least 2")
        if self.queries < 1:
            raise ValueError("queries: at least 1")
        unknown = set(self.mechanisms) - set(MECHANISMS)
        if unknown or not self.mechanisms:
            raise ValueError(f"mechanisms: expected some of {', '.join(MECHANISMS)}, got {self.mechanisms}")
        for name, weight in self.mechanism_weights.items():
            if name not in MECHANISMS or not weight >= 0:
                raise ValueError(
                    f"mechanism_weights: {name}={weight}: expected a mechanism of "
                    f"{', '.join(MECHANISMS)} and a weight >= 0"
                )


@dataclass
class SyntheticTable:
    """One drawn table: rows of features, labels and how they were made."""

    rows: list[dict[str, Any]]
    labels: list[Any]
    target_type: Literal["classification", "regression"]
    meta: dict[str, Any] = field(default_factory=dict)


# --- mechanisms ----------------------------------------------------------------------------------


def _activation(rng: np.random.Generator) -> Any:
    return [
        np.tanh,
        lambda x: np.maximum(x, 0.0),
        np.sin,
        lambda x: x,
        lambda x: np.sign(x) * np.abs(x) ** 0.5,
    ][int(rng.integers(5))]


def _scm(rng: np.random.Generator, n: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """A random MLP as a causal graph: features and the target are random nodes of it."""
    layers = int(rng.integers(1, 4))
    width = max(f + 1, int(rng.integers(8, 33)))
    noise = rng.uniform(0.01, 0.2)
    act = _activation(rng)
    h = rng.normal(size=(n, int(rng.integers(1, 5))))  # few root causes: nodes share information
    nodes = []
    for _ in range(layers):
        w = rng.normal(scale=1.0 / np.sqrt(h.shape[1]), size=(h.shape[1], width))
        w *= rng.random(w.shape) < rng.uniform(0.3, 1.0)  # sparse edges
        h = act(h @ w) + rng.normal(scale=noise, size=(n, width))
        nodes.append(h)
    graph = np.concatenate(nodes, axis=1)
    graph = graph[:, graph.std(axis=0) > 1e-6]
    if graph.shape[1] < f + 1:  # degenerate draw: top up with noise columns
        graph = np.concatenate([graph, rng.normal(size=(n, f + 1 - graph.shape[1]))], axis=1)
    picked = rng.permutation(graph.shape[1])[: f + 1]
    return graph[:, picked[1:]], graph[:, picked[0]]


def _tree(rng: np.random.Generator, n: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """A random decision tree over independent features."""
    x = rng.normal(size=(n, f)) if rng.random() < 0.5 else rng.uniform(-2, 2, size=(n, f))
    depth = int(rng.integers(1, 4))  # deeper trees are not learnable from a few dozen rows
    y = np.zeros(n)

    def grow(idx: np.ndarray, d: int) -> None:
        if d == depth or len(idx) < 2:
            y[idx] = rng.normal()
            return
        j = int(rng.integers(f))
        cut = float(np.quantile(x[idx, j], rng.uniform(0.2, 0.8)))
        grow(idx[x[idx, j] <= cut], d + 1)
        grow(idx[x[idx, j] > cut], d + 1)

    grow(np.arange(n), 0)
    return x, y


def _linear(rng: np.random.Generator, n: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """A random linear function of correlated features."""
    mix = rng.normal(size=(f, f)) * (rng.random((f, f)) < 0.3) + np.eye(f)
    x = rng.normal(size=(n, f)) @ mix
    w = rng.normal(size=f) * (rng.random(f) < rng.uniform(0.3, 1.0))
    if not w.any():
        w[int(rng.integers(f))] = 1.0
    return x, x @ w


def _round(value: float) -> float:
    """Three significant digits: realistic cells and short chat prompts."""
    return float(f"{value:.3g}")


def _mix(rng: np.random.Generator, base: np.ndarray, f: int) -> np.ndarray:
    """``f`` redundant, noisy features as random (sometimes nonlinear) mixtures of ``base``'s columns."""
    x = base @ rng.normal(size=(base.shape[1], f))
    if rng.random() < 0.5:
        x = _activation(rng)(x)
    spread = x.std(axis=0) + 1e-9
    return x + rng.normal(size=x.shape) * rng.uniform(0.05, 0.8, size=f) * spread


def _draw_mechanism(rng: np.random.Generator, cfg: PriorConfig, regression: bool) -> str:
    """The table's mechanism: uniform over ``cfg.mechanisms`` (blobs make classes only), or by
    ``cfg.mechanism_weights``. Uniform draws keep their old call, so existing streams are unchanged."""
    mechanisms = [m for m in cfg.mechanisms if not (regression and m == "blobs")] or ["linear"]
    if not cfg.mechanism_weights:
        return mechanisms[int(rng.integers(len(mechanisms)))]
    weights = np.array([cfg.mechanism_weights.get(m, 1.0) for m in mechanisms])
    if weights.sum() <= 0:  # every allowed mechanism weighed 0: fall back to uniform
        weights = np.ones(len(mechanisms))
    return mechanisms[int(rng.choice(len(mechanisms), p=weights / weights.sum()))]


def sample_table(rng: np.random.Generator, n_rows: int, cfg: PriorConfig | None = None) -> SyntheticTable:
    """Draw one table of ``n_rows`` rows from the prior.

    Args:
        rng: The generator every random choice comes from.
        n_rows: Rows to draw.
        cfg: The prior's ranges (defaults: :class:`PriorConfig`).
    """
    cfg = cfg or PriorConfig()
    f = int(rng.integers(cfg.features[0], cfg.features[1] + 1))
    regression = rng.random() < cfg.regression_p
    mechanism = _draw_mechanism(rng, cfg, regression)
    n_irrelevant = int(rng.integers(0, int(cfg.irrelevant_max * f) + 1)) if f > 1 else 0
    n_relevant = f - n_irrelevant
    c = int(rng.integers(cfg.classes[0], cfg.classes[1] + 1))
    shares = rng.dirichlet(np.full(c, rng.uniform(*cfg.imbalance)))
    shares = np.maximum(shares, 1.0 / n_rows)  # every class can occur
    shares = shares / shares.sum()
    factors = 0
    classes: np.ndarray | None = None
    if mechanism == "blobs":
        # one Gaussian cluster per class in a few latent factors, seen through noisy mixtures
        factors = int(rng.integers(1, min(cfg.max_factors, n_relevant) + 1))
        classes = rng.choice(c, size=n_rows, p=shares)
        means = rng.normal(scale=rng.uniform(0.5, 3.0), size=(c, factors))
        x = _mix(rng, means[classes] + rng.normal(size=(n_rows, factors)), n_relevant)
        latent = np.zeros(n_rows)
    else:
        make = {"scm": _scm, "tree": _tree, "linear": _linear}[mechanism]
        if rng.random() < cfg.factors_p:
            # few latent factors behind many redundant, noisy features (real tables look like this):
            # the mechanism maps the factors to the target, random mixtures map them to the features
            factors = int(rng.integers(1, min(cfg.max_factors, n_relevant) + 1))
            base, latent = make(rng, n_rows, factors)
            x = _mix(rng, base, n_relevant)
        else:
            x, latent = make(rng, n_rows, n_relevant)
    x = np.concatenate([x, rng.normal(size=(n_rows, n_irrelevant))], axis=1)[:, rng.permutation(f)]
    x = x * rng.lognormal(0, 1, size=f) + rng.normal(0, 2, size=f)  # each column its own scale
    latent = (latent - latent.mean()) / (latent.std() + 1e-9)
    latent = latent + rng.normal(scale=rng.uniform(0, cfg.noise_max), size=n_rows)
    names = [f"x{j + 1}" for j in range(f)]
    columns: list[list[Any]] = [[_round(v) for v in x[:, j]] for j in range(f)]
    n_cat = 0
    if rng.random() < cfg.categorical_p:
        n_cat = int(rng.integers(1, max(1, int(cfg.categorical_max * f)) + 1))
        for j in rng.permutation(f)[:n_cat]:
            k = int(rng.integers(2, 7))
            cuts = np.quantile(x[:, j], np.sort(rng.uniform(0, 1, size=k - 1)))
            codes = np.searchsorted(cuts, x[:, j])
            letters = rng.permutation(k)
            columns[j] = [f"c{letters[code]}" for code in codes]
    missing = 0.0
    if rng.random() < cfg.missing_p:
        missing = rng.uniform(0, cfg.missing_max)
        for col in columns:
            for i in np.nonzero(rng.random(n_rows) < missing)[0]:
                col[i] = None
    rows = [{names[j]: columns[j][i] for j in range(f)} for i in range(n_rows)]
    meta: dict[str, Any] = {
        "mechanism": mechanism,
        "features": f,
        "factors": factors,
        "irrelevant": n_irrelevant,
        "categorical": n_cat,
        "missing": round(missing, 3),
    }
    if regression:
        scale, shift = rng.lognormal(0, 1.5), rng.normal(0, 10)
        return SyntheticTable(rows, [_round(v * scale + shift) for v in latent], "regression", meta)
    if classes is None:  # cut the latent target at the class shares' quantiles, in a random order
        cuts = np.quantile(latent, np.cumsum(shares)[:-1])
        classes = rng.permutation(c)[np.searchsorted(cuts, latent)]
    flip = rng.uniform(0, cfg.label_noise_max)
    noisy = rng.random(n_rows) < flip
    classes[noisy] = rng.integers(c, size=int(noisy.sum()))
    meta |= {"classes": c, "label_noise": round(flip, 3)}
    return SyntheticTable(rows, [int(v) for v in classes], "classification", meta)


# --- tasks and episodes --------------------------------------------------------------------------


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def sample_task(
    seed: int, index: int = 0, cfg: PriorConfig | None = None, *, demos: int | None = None
) -> Task:
    """Table ``index`` of ``seed`` as a task: seeded demonstrations (stratified) and query rows.

    Args:
        seed: The stream's seed.
        index: Which table of the stream.
        cfg: The prior's ranges.
        demos: Demonstrations (default: drawn from ``cfg.demos``, fewer when the text would not fit).
    """
    cfg = cfg or PriorConfig()
    rng = _rng(seed, index)
    k = int(rng.integers(cfg.demos[0], cfg.demos[1] + 1)) if demos is None else demos
    table = sample_table(rng, k + cfg.queries + int(rng.integers(0, 8)), cfg)
    width = len(table.rows[0]) + 4  # "I", features, "O", label, newline
    if demos is None:
        k = max(1, min(k, cfg.max_chars // width - cfg.queries))
    demo_idx, rest = stratified_split(
        table.labels, k, int(rng.integers(1 << 31)), stratify=table.target_type == "classification"
    )
    if table.target_type == "classification":  # a query of a class no demonstration shows teaches "?"
        shown = {table.labels[i] for i in demo_idx}
        rest = [i for i in rest if table.labels[i] in shown] or rest
    queries = rest[: cfg.queries]
    names = list(table.rows[0])
    label_type = "float" if table.target_type == "regression" else "int"
    return Task.model_validate(
        {
            "id": f"prior-{seed}-{index}",
            "kind": "tabular",
            "type": f"prior_{table.meta['mechanism']}",
            "function": {
                "name": "predict_y",
                "signature": "predict_y("
                + ", ".join(f"{c}: {'str' if _categorical(table, c) else 'float'}" for c in names)
                + f") -> {label_type}",
                "docstring": "A row of a synthetic table. Predicts 'y' from the row's other columns.",
                "target_type": table.target_type,
            },
            "train": [{"input": table.rows[i], "output": table.labels[i]} for i in demo_idx],
            "test": [{"input": table.rows[i], "target": table.labels[i]} for i in queries],
        }
    )


def _categorical(table: SyntheticTable, column: str) -> bool:
    return any(isinstance(r[column], str) for r in table.rows)


# --- command line --------------------------------------------------------------------------------


def write_tables(out: Path, n: int, seed: int, rows: int = 150, cfg: PriorConfig | None = None) -> list[Path]:
    """Write ``n`` tables of ``rows`` rows as CSV files (label column ``y``) under ``out``."""
    cfg = cfg or PriorConfig()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        table = sample_table(_rng(seed, i), rows, cfg)
        kind = "reg" if table.target_type == "regression" else "cls"
        path = out / f"{kind}_{table.meta['mechanism']}_{seed}_{i}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([*table.rows[0], "y"])
            for row, label in zip(table.rows, table.labels, strict=True):
                writer.writerow(["" if v is None else v for v in row.values()] + [label])
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.tabular_prior", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, help="folder to write CSV tables into")
    parser.add_argument("--tables", type=int, default=20, help="how many tables (default 20)")
    parser.add_argument("--rows", type=int, default=150, help="rows per table (default 150)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stream (default 0)")
    args = parser.parse_args(argv)
    if args.tables < 1 or args.rows < 2:
        print("error: --tables must be at least 1 and --rows at least 2", file=sys.stderr)
        return 2
    for path in write_tables(Path(args.out), args.tables, args.seed, args.rows):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
