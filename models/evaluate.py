"""Fast measurements of a checkpoint during training: greedy exact match without generating.

Greedy decoding reproduces the target exactly iff, with the target fed in (teacher forcing), the
most likely next token at every target position is the target's token, the closing newline
included. So one batched forward pass per episode gives the exact-match rate that greedy
generation would give, at a fraction of the cost: that is how :mod:`models.train` draws its curve
every few minutes on four sets (:func:`evaluation_sets`):

* ``held_out``: the families training never draws (:data:`tasks.generators.HELD_OUT`), fixed
  tasks per family: the measure that chooses recipes and checkpoints;
* ``held_in``: fresh training-distribution tasks (chains of primitives, lists);
* ``arc``: the shared 1D-ARC types, when the folder is there;
* ``bundled``: the bundled example tasks, every test query;
* ``primitives`` (asked for with ``--primitives N``): N tasks of every training family on its own
  and of every list rule, reported per type: which of the things it is trained on it has learned.

It also gives the output loss on the held-out queries after 0..3 demonstrations: the signature of
in-context learning (it should fall as demonstrations are added).

Command (a checkpoint folder, e.g. the shipped one)::

    python -m models.evaluate models/checkpoints/embedded
    python -m models.evaluate models/checkpoints/embedded --primitives 20   # + per primitive
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from prompts.compact import END, encode_pair, encode_query, encode_value
from tasks.generators import FAMILIES, HELD_OUT, LIST_RULES, sample_list_task, sample_task
from tasks.schema import Task

#: The shared 1D-ARC folder beside the repository (measured when present).
DEFAULT_ARC = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "1d-arc"
#: The bundled example tasks.
BUNDLED = Path(__file__).resolve().parents[1] / "tasks" / "examples"
#: Seeds of the fixed evaluation tasks (never a training seed: training draws from seed*1_000_003+i).
HELD_OUT_SEED, HELD_IN_SEED, PRIMITIVES_SEED = 20_261_201, 20_261_202, 20_261_203
#: Sets reported per task type as well as overall.
BY_TYPE = ("held_out", "primitives")
MAX_TOKENS = 1024  # the embedded model's context

Episode = tuple[list[int], int]  # token ids (prompt + target), where the target starts


def evaluation_sets(
    *, per_family: int = 30, arc_dir: Path | None = DEFAULT_ARC, arc_per_type: int = 25, primitives: int = 0
) -> dict[str, list[Task]]:
    """The fixed tasks of each evaluation set (the same every call; 1D-ARC: the first of each type).

    ``primitives`` > 0 adds that many tasks of each training family alone and of each list rule.
    """
    from tasks.loaders import load_task_dir

    rng = random.Random(HELD_OUT_SEED)
    sets: dict[str, list[Task]] = {
        "held_out": [
            sample_task(rng, name, n_train=3) for name in sorted(HELD_OUT) for _ in range(per_family)
        ]
    }
    rng = random.Random(HELD_IN_SEED)
    held_in = []
    for _ in range(4 * per_family):
        if rng.random() < 0.1:
            held_in.append(sample_list_task(rng, n_train=3))
        else:
            held_in.append(sample_task(rng, n_train=3, compose_p=0.5, deep_p=0.3))
    sets["held_in"] = held_in
    if arc_dir is not None and arc_dir.is_dir():
        by_type: dict[str, list[Task]] = {}
        for task in load_task_dir(arc_dir):
            by_type.setdefault(task.type or "?", []).append(task)
        sets["arc"] = [t for tasks in by_type.values() for t in tasks[:arc_per_type]]
    sets["bundled"] = load_task_dir(BUNDLED)
    if primitives > 0:
        sets["primitives"] = primitive_tasks(primitives)
    return sets


def primitive_tasks(per_type: int) -> list[Task]:
    """``per_type`` fixed tasks of every training family on its own and of every list rule."""
    rng = random.Random(PRIMITIVES_SEED)
    tasks = [sample_task(rng, name, n_train=3) for name in sorted(FAMILIES) for _ in range(per_type)]
    lists: dict[str, list[Task]] = {}
    for _ in range(100 * per_type):  # list rules are drawn at random: draw until each has enough
        task = sample_list_task(rng, n_train=3)
        if len(lists.setdefault(task.type or "?", [])) < per_type:
            lists[task.type or "?"].append(task)
        if len(lists) == len(LIST_RULES) and all(len(v) >= per_type for v in lists.values()):
            break
    return tasks + [t for kind in sorted(lists) for t in lists[kind]]


def episodes_of(task: Task, vocab: dict[str, int], max_demos: int = 3) -> list[Episode]:
    """One episode per test query with a target: demonstrations, the query, its target + newline.

    Earlier demonstrations are dropped while the episode would not fit the context.
    """
    out = []
    for query in task.test:
        if query.target is None:
            continue
        demos = task.train[:max_demos]
        while True:
            prompt = "".join(encode_pair(d.input, d.output, task.kind) for d in demos)
            prompt += encode_query(query.input, task.kind)
            target = encode_value(query.target, task.kind) + END
            if len(prompt) + len(target) + 1 <= MAX_TOKENS or not demos:
                break
            demos = demos[1:]
        ids = [vocab["<bos>"]] + [vocab.get(ch, vocab["<unk>"]) for ch in prompt + target]
        out.append((ids, len(ids) - len(target)))
    return out


def forward_episodes(
    model: Any, episodes: list[Episode], pad_id: int, batch: int = 32
) -> list[tuple[bool, float, int]]:
    """Per episode: greedy exact match, summed target loss, target tokens."""
    import torch

    order = sorted(range(len(episodes)), key=lambda i: len(episodes[i][0]))
    results: list[tuple[bool, float, int]] = [(False, 0.0, 0)] * len(episodes)
    model.eval()
    for lo in range(0, len(order), batch):
        chunk = [episodes[i] for i in order[lo : lo + batch]]
        width = max(len(ids) for ids, _ in chunk)
        ids_t = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (ids, _) in enumerate(chunk):
            ids_t[row, : len(ids)] = torch.tensor(ids)
            attn[row, : len(ids)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids_t, attention_mask=attn).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        for row, (ids, start) in enumerate(chunk):
            positions = torch.arange(start - 1, len(ids) - 1)
            wanted = ids_t[row, start : len(ids)]
            predicted = logits[row, positions].argmax(-1)
            loss = -logp[row, positions, wanted].sum().item()
            results[order[lo + row]] = (bool((predicted == wanted).all()), loss, len(ids) - start)
    return results


def exact_match_rates(model: Any, sets: dict[str, list[Task]], vocab: dict[str, int]) -> dict[str, Any]:
    """Greedy exact match per set (and per held-out family), plus held-out loss after 0..3 demos."""
    out: dict[str, Any] = {}
    for name, tasks in sets.items():
        per_task = [episodes_of(t, vocab) for t in tasks]
        flat = [e for eps in per_task for e in eps]
        results = forward_episodes(model, flat, vocab["<pad>"])
        hits = [r[0] for r in results]
        out[name] = round(sum(hits) / max(len(hits), 1), 4)
        if name in BY_TYPE:
            by_type: dict[str, list[bool]] = {}
            pos = 0
            for task, eps in zip(tasks, per_task, strict=True):
                by_type.setdefault(task.type or "?", []).extend(hits[pos : pos + len(eps)])
                pos += len(eps)
            key = "held_out_by_family" if name == "held_out" else f"{name}_by_type"
            out[key] = {k: round(sum(v) / len(v), 3) for k, v in sorted(by_type.items())}
    held = [t for i, t in enumerate(sets.get("held_out", [])) if i % 3 == 0]  # a third is enough
    if held:
        losses = {}
        for k in range(4):
            eps = [e for t in held for e in episodes_of(t.model_copy(update={"train": t.train[:k]}), vocab)]
            res = forward_episodes(model, eps, vocab["<pad>"])
            losses[str(k)] = round(sum(r[1] for r in res) / max(sum(r[2] for r in res), 1), 4)
        out["held_out_loss_by_demos"] = losses
    return out


#: Seed of the held-in chains that measure each primitive's error (:func:`primitive_errors`).
REWEIGH_SEED = 20_261_204


def primitive_errors(model: Any, vocab: dict[str, int], tasks: int = 1500) -> dict[str, tuple[float, int]]:
    """Per training primitive: greedy error rate on fresh held-in chains that contain it, and how many.

    The chains are the training distribution once the curriculum is over (half of them
    compositions, a third of those three deep, full-length rows), drawn from a fixed seed that
    training never uses; a chain's miss counts against every primitive in it. Held-out families
    are never drawn: this measures where the model errs on what it trains on.
    """
    rng = random.Random(REWEIGH_SEED)
    drawn = [sample_task(rng, n_train=3, compose_p=0.5, deep_p=0.3) for _ in range(tasks)]
    results = forward_episodes(model, [episodes_of(t, vocab)[0] for t in drawn], vocab["<pad>"])
    misses: dict[str, list[bool]] = {name: [] for name in FAMILIES}
    for task, (hit, _, _) in zip(drawn, results, strict=True):
        for name in set((task.type or "").split("+")):
            misses[name].append(not hit)
    return {name: (sum(v) / len(v) if v else 0.0, len(v)) for name, v in misses.items()}


def weights_from_errors(
    errors: dict[str, tuple[float, int]], lo: float = 0.5, hi: float = 2.0
) -> dict[str, float]:
    """Relative draw weights: each primitive's error over the mean error, clipped to ``[lo, hi]``.

    Clipped so that no primitive is starved (what is learned must stay learned) and none takes
    over the mix; rounded, so the run's config records them legibly.
    """
    rates = [e for e, n in errors.values() if n > 0]
    mean = sum(rates) / len(rates) if rates else 0.0
    if mean <= 0:
        return {name: 1.0 for name in errors}
    return {name: round(min(hi, max(lo, e / mean)), 3) for name, (e, _) in errors.items()}


def ttt_tasks(held_out: list[Task], per_family: int) -> list[Task]:
    """The first ``per_family`` tasks of each held-out family."""
    by_family: dict[str, list[Task]] = {}
    for task in held_out:
        by_family.setdefault(task.type or "?", []).append(task)
    return [t for tasks in by_family.values() for t in tasks[:per_family]]


def ttt_rates(
    checkpoint: Path, tasks: list[Task], recipes: tuple[str, ...] = ("adaptive", "trial")
) -> dict[str, Any]:
    """TTT + vote exact match on ``tasks`` (first query each) per recipe, with seconds per task.

    Uses the product's path (:class:`models.hf_backend.HFBackend`, :func:`models.ttt.run_ttt`)
    from the ``plain`` knobs (early stopping on a held-back demonstration, four views voted),
    the named recipe applied on top (``adaptive`` is the product's default); this is slow (seconds
    per task), so training runs it once per leg on a few tasks per held-out family.
    """
    import time

    from models.hf_backend import HFBackend
    from models.ttt import TTTConfig, run_ttt, with_recipe
    from tasks.scoring import exact_match

    backend = HFBackend(checkpoint)
    out: dict[str, Any] = {"tasks": len(tasks)}
    for recipe in recipes:
        cfg = with_recipe(TTTConfig(early_stop=True), recipe)
        hits, started = 0, time.perf_counter()
        for task in tasks:
            query = task.test[0]
            result = run_ttt(backend, task, query.input, cfg)
            best = result.answers[0][0] if result.answers else None
            hits += bool(exact_match(task.kind, best, query.target))
        out[recipe] = round(hits / max(len(tasks), 1), 4)
        out[f"{recipe}_seconds_per_task"] = round((time.perf_counter() - started) / max(len(tasks), 1), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint folder (HF format)")
    parser.add_argument("--per-family", type=int, default=30, help="held-out tasks per family (default 30)")
    parser.add_argument(
        "--eval-arc", type=Path, default=DEFAULT_ARC, help="1D-ARC folder (skipped when absent)"
    )
    parser.add_argument(
        "--arc-per-type", type=int, default=50, help="1D-ARC tasks per type (default 50: all)"
    )
    parser.add_argument("--ttt", type=int, default=0, help="also TTT + vote on N held-out tasks per family")
    parser.add_argument(
        "--primitives", type=int, default=0, help="also N tasks of every training family and list rule"
    )
    args = parser.parse_args(argv)
    if not (args.checkpoint / "config.json").exists():
        parser.exit(2, f"error: {args.checkpoint}: not a checkpoint folder (no config.json)\n")
    import torch
    from transformers import AutoModelForCausalLM

    from models.tokenizer import vocabulary

    model = AutoModelForCausalLM.from_pretrained(args.checkpoint, local_files_only=True, dtype=torch.float32)
    sets = evaluation_sets(
        per_family=args.per_family,
        arc_dir=args.eval_arc,
        arc_per_type=args.arc_per_type,
        primitives=args.primitives,
    )
    report = exact_match_rates(model, sets, vocabulary())
    if args.ttt > 0:
        report["held_out_ttt"] = ttt_rates(args.checkpoint, ttt_tasks(sets["held_out"], args.ttt))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
