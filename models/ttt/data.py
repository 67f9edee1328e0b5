"""Test-time training data: leave-one-out episodes under views, written as loss-masked sequences."""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any, Literal

from models.base import ModelBackend, PromptParts
from models.batching import make_batch
from models.ttt.config import Segment, TTTConfig
from prompts.compact import parse_correction
from tasks.augment import Augmenter, Identity, augment_task, sample_views
from tasks.schema import Example, Task


def leave_one_out(task: Task, rng: random.Random) -> list[tuple[list[Example], Example]]:
    """Each demonstration held out in turn, the others (in a shuffled order) as its context."""
    return [
        ([task.train[j] for j in context], task.train[i]) for context, i in _episodes(len(task.train), rng)
    ]


def _episodes(
    k: int, rng: random.Random, skip_target: int | None = None, kind: str = "loo"
) -> list[tuple[list[int], int]]:
    """Episodes as demonstration indices: (shuffled context, target last).

    ``loo``: each demonstration is the target once, all others its context. ``loo+l2o`` adds the
    leave-two-out episodes (each other demonstration dropped from the context in turn, where at
    least one remains), in fresh shuffled orders: more, shorter episodes from the same data.
    """
    out = []
    for i in range(k):
        context = [j for j in range(k) if j != i]
        rng.shuffle(context)
        if i != skip_target:
            out.append((context, i))
    if kind == "loo+l2o" and k >= 3:
        for i in range(k):
            for dropped in range(k):
                if i in (dropped, skip_target):
                    continue
                context = [j for j in range(k) if j not in (i, dropped)]
                rng.shuffle(context)
                out.append((context, i))
    return out


def draw_views(rng: random.Random, task: Task, cfg: TTTConfig, n: int) -> list[Augmenter]:
    """``n`` views drawn from ``rng`` (identity included); the identity alone without ``augment``."""
    return sample_views(rng, task, n) if cfg.augment else [Identity()]


def fold_corrections(task: Task) -> Task:
    """``task`` with its correction notes turned into what they are for training: demonstrations.

    Reflection writes a correction for each demonstration it got wrong; to TTT such a note is the
    demonstration again. Left in the prompt, it gives the held-out answer away in that
    demonstration's leave-one-out episodes (the adapter learns to copy from the notes, which the
    query has none of), and, written after the demonstrations, it breaks the prefix-consistency
    that trains every output (measured on 1D-ARC pattern copy: TTT after a reflection solved 0
    of 3 tasks it solved alone, at three times the time). So a correction of a demonstration's
    input is dropped, a correction of any other input (an expert's answer to an earlier query) is
    appended as a demonstration, and every other note stays in the prompt.
    """
    notes: list[str] = []
    train = list(task.train)
    for note in task.notes:
        pair = parse_correction(note)
        if pair is None:
            notes.append(note)
        elif all(pair[0] != demo.input for demo in train):
            train.append(Example(input=pair[0], output=pair[1]))
    if notes == task.notes and len(train) == len(task.train):
        return task
    return task.model_copy(update={"notes": notes, "train": train})


def episode_segments(
    model: ModelBackend,
    task: Task,
    demos: list[Example],
    *,
    loss_on: Literal["all", "last"],
    no_loss: frozenset[int] = frozenset(),
) -> list[Segment]:
    """One training sequence: the demonstrations in order, the loss on their outputs.

    The last demonstration is written as the query plus its output (what the model is asked at
    inference). With ``loss_on="all"`` every output after the first carries the loss, except those
    at positions in ``no_loss`` (a held-back demonstration); this needs a renderer whose prompt
    for the first ``j`` demonstrations is a prefix of the prompt for more (the compact format is);
    for any other renderer (chat prompts) only the last output carries the loss.
    """

    def parts(j: int) -> PromptParts:
        return PromptParts(
            kind=task.kind, function=task.function, notes=task.notes, demos=demos[:j], query=demos[j].input
        )

    def prompt(j: int) -> str:
        return model.renderer.render(parts(j)).text or ""

    def target(j: int) -> str:  # with its prompt's parts: a table's label symbols depend on them
        return model.renderer.format_value(demos[j].output, task.kind, parts(j))

    last = len(demos) - 1
    whole = prompt(last)
    if loss_on == "last" or last < 2:
        return [(whole, False), (target(last), True)]
    full = whole + target(last)
    segments: list[Segment] = []
    pos = 0
    for j in range(1, last + 1):
        head, out = prompt(j), target(j)
        if len(head) < pos or not full.startswith(head + out):
            # Not prefix-consistent (e.g. chat messages, or correction notes placed after the
            # demonstrations): the outputs cannot be located, so only the last one is trained on.
            return [(whole, False), (target(last), True)]
        segments.append((head[pos:], False))
        segments.append((out, j not in no_loss or j == last))
        pos = len(head) + len(out)
    return segments


def training_sequences(
    model: ModelBackend,
    task: Task,
    cfg: TTTConfig,
    rng: random.Random,
    *,
    views: list[Augmenter] | None = None,
    held_back: int | None = None,
) -> list[list[Segment]]:
    """Training sequences: leave-one-out episodes x views, shuffled, capped at ``max_sequences``.

    Args:
        model: The backend (its renderer writes the sequences).
        task: The task whose demonstrations are used.
        cfg: The run's settings.
        rng: The RNG of every random choice (views, orders).
        views: The views to use (drawn from ``rng`` when ``None``).
        held_back: Index of a demonstration never used as a target (early stopping).
    """
    if views is None:
        views = draw_views(rng, task, cfg, cfg.train_views)
    sequences: list[list[Segment]] = []
    for view in views:
        seen = augment_task(task, view)
        for context, i in _episodes(len(task.train), rng, skip_target=held_back, kind=cfg.episodes):
            order = [*context, i]
            no_loss = frozenset(p for p, j in enumerate(order) if j == held_back)
            demos = [seen.train[j] for j in order]
            sequences.append(episode_segments(model, task, demos, loss_on=cfg.loss_on, no_loss=no_loss))
    rng.shuffle(sequences)
    return sequences[: cfg.max_sequences]


def training_pairs(
    model: ModelBackend, task: Task, cfg: TTTConfig, rng: random.Random
) -> list[tuple[str, str]]:
    """Training sequences as (untrained text, trained text) pairs, with the loss on the last output."""
    last_only = TTTConfig(**{**asdict(cfg), "loss_on": "last"})
    return [
        ("".join(t for t, _ in seq[:-1]), seq[-1][0])
        for seq in training_sequences(model, task, last_only, rng)
    ]


def _batch(tokenizer: Any, sequences: list[list[Segment]], pad_id: int) -> dict[str, Any]:
    """Right-padded ids (:func:`models.batching.make_batch`), labels only on the segments that carry
    the loss."""
    rows = []
    for seq in sequences:
        ids: list[int] = []
        mask: list[int] = []
        for n, (text, trained) in enumerate(seq):
            # Only the first piece gets the tokenizer's special tokens (its bos).
            piece = list(tokenizer(text, add_special_tokens=n == 0).input_ids) if text else []
            ids += piece
            mask += [int(trained)] * len(piece)
        rows.append((ids, mask))
    return make_batch(rows, pad_id)
