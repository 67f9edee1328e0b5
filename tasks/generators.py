"""Procedural 1-D grid tasks, written from first principles, for training and testing.

A *family* is a kind of transformation (shift, mirror, recolour, fill, ...); each family draws a
*rule* with its own parameters (how far to shift, which colour, which direction), so one family
gives many rules and the same input maps to different outputs under different rules: only the
demonstrations say which rule a task uses. That is what makes in-context learning pay.

Grids are one row (``[[c0, c1, ...]]``) of colours 0-9 with 0 as background.

Example::

    import random
    from tasks.generators import FAMILIES, sample_task
    task = sample_task(random.Random(0), "shift")   # 3 demonstrations + 1 query, one rule
    held = sample_task(random.Random(0), "shift_hollow")  # a held-out composition
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tasks.schema import Example, MockFunction, Query, Task, check_value

Row = list[int]
#: A rule maps one row to another, or ``None`` where it does not apply to that input.
RuleFn = Callable[[Row], Row | None]
#: Draws an input row of about ``n`` cells suited to a rule (its parameters are closed over).
#: Samplers may lengthen a row that is too short for their layout (e.g. a marker plus a block).
InputFn = Callable[[random.Random, int], Row]

#: Row lengths drawn by default (1xN grids); training can start shorter (a curriculum).
DEFAULT_LENGTHS = (8, 30)
#: The shortest row any sampler is asked for.
MIN_LENGTH = 6


@dataclass(frozen=True)
class Rule:
    """One concrete transformation: how to draw inputs, how to map them, and what it says."""

    apply: RuleFn
    sample_input: InputFn
    description: str


@dataclass(frozen=True)
class Family:
    """A family of rules: ``draw(rng)`` returns one rule with fresh parameters."""

    name: str
    draw: Callable[[random.Random], Rule]


# --- row helpers -------------------------------------------------------------------------------


def blocks(row: Row) -> list[tuple[int, int, int]]:
    """Runs of one non-background colour: ``(start, end_exclusive, colour)``."""
    out, i = [], 0
    while i < len(row):
        if row[i] == 0:
            i += 1
            continue
        j = i
        while j < len(row) and row[j] == row[i]:
            j += 1
        out.append((i, j, row[i]))
        i = j
    return out


def _colour(rng: random.Random, exclude: tuple[int | None, ...] = ()) -> int:
    return rng.choice([c for c in range(1, 10) if c not in exclude])


def _one_block(
    rng: random.Random, n: int, *, margin: int = 0, colour: int | None = None, min_len: int = 1
) -> Row:
    """A row of (at least) ``n`` cells with one block, at least ``margin`` cells from either edge."""
    n = max(n, 2 * margin + min_len + 1)
    size = rng.randint(min_len, max(min_len, min(8, n - 2 * margin - 1)))
    start = rng.randint(margin, n - margin - size)
    c = colour or _colour(rng)
    row = [0] * n
    row[start : start + size] = [c] * size
    return row


def _layout(rng: random.Random, n: int, sizes: list[int]) -> list[int]:
    """Start cells for blocks of ``sizes`` in a row of ``n``, separated by at least one cell.

    The spare cells are spread at random over the gaps (and both edges), so blocks sit anywhere
    in the row rather than packed to one side.
    """
    spare = n - sum(sizes) - (len(sizes) - 1)
    cuts = sorted(rng.randint(0, spare) for _ in range(len(sizes)))
    starts, pos, used = [], 0, 0
    for size, cut in zip(sizes, cuts, strict=True):
        pos += cut - used
        used = cut
        starts.append(pos)
        pos += size + 1
    return starts


def _many_blocks(
    rng: random.Random,
    n: int,
    k: int,
    *,
    colour: int | None = None,
    sizes: tuple[int, int] = (1, 5),
    distinct_sizes: bool = False,
) -> Row:
    """A row of (at least) ``n`` cells with ``k`` separated blocks (different colours unless given)."""
    if distinct_sizes:
        lengths = rng.sample(range(sizes[0], sizes[1] + 1), k)
    else:
        lengths = [rng.randint(*sizes) for _ in range(k)]
    n = max(n, sum(lengths) + k + 1)
    row = [0] * n
    for start, size in zip(_layout(rng, n, lengths), lengths, strict=True):
        row[start : start + size] = [colour or _colour(rng)] * size
    return row


# --- families ----------------------------------------------------------------------------------


def _shift(rng: random.Random) -> Rule:
    k = rng.choice([-3, -2, -1, 1, 2, 3])

    def apply(row: Row) -> Row | None:
        n = len(row)
        out = [0] * n
        for i, c in enumerate(row):
            if c and not 0 <= i + k < n:
                return None  # would fall off the edge
            if c:
                out[i + k] = c
        return out

    return Rule(
        apply,
        lambda r, n: _one_block(r, n, margin=3),
        f"Moves every coloured cell {abs(k)} cells to the {'right' if k > 0 else 'left'}.",
    )


def _mirror(rng: random.Random) -> Rule:
    return Rule(lambda row: row[::-1], lambda r, n: _many_blocks(r, n, r.randint(1, 3)), "Mirrors the row.")


def _recolour_all(rng: random.Random) -> Rule:
    c = _colour(rng)
    return Rule(
        lambda row: [c if v else 0 for v in row],
        lambda r, n: _many_blocks(r, n, r.randint(1, 3), colour=_colour(r, (c,))),
        f"Paints every coloured cell with colour {c}.",
    )


def _recolour_by_size(rng: random.Random) -> Rule:
    big, small = _colour(rng), _colour(rng)
    base = _colour(rng, (big, small))

    def apply(row: Row) -> Row | None:
        bs = blocks(row)
        sizes = [e - s for s, e, _ in bs]
        if not bs or sizes.count(max(sizes)) > 1:
            return None  # the largest block must be unique
        out = list(row)
        for (s, e, _), size in zip(bs, sizes, strict=True):
            out[s:e] = [big if size == max(sizes) else small] * (e - s)
        return out

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(2, 3), colour=base),
        f"Paints the largest block {big} and the other blocks {small}.",
    )


def _fill_between(rng: random.Random) -> Rule:
    fill = rng.choice([None, _colour(rng)])

    def apply(row: Row) -> Row | None:
        cells = [i for i, v in enumerate(row) if v]
        if len(cells) != 2:
            return None
        a, b = cells
        out = list(row)
        out[a + 1 : b] = [fill or row[a]] * (b - a - 1)
        return out

    def sample(r: random.Random, n: int) -> Row:
        a = r.randint(0, n - 4)
        b = r.randint(a + 2, n - 1)
        row = [0] * n
        row[a] = row[b] = _colour(r, (fill,))
        return row

    what = f"colour {fill}" if fill else "their colour"
    return Rule(apply, sample, f"Fills the cells between the two coloured end points with {what}.")


def _hollow(rng: random.Random) -> Rule:
    def apply(row: Row) -> Row | None:
        out = list(row)
        for s, e, _ in blocks(row):
            out[s + 1 : e - 1] = [0] * max(0, e - s - 2)
        return out

    return Rule(
        apply, lambda r, n: _one_block(r, n, min_len=3), "Keeps only the two end cells of each block."
    )


def _denoise(rng: random.Random) -> Rule:
    def apply(row: Row) -> Row | None:
        bs = blocks(row)
        keep = [b for b in bs if b[1] - b[0] > 1]
        if len(keep) != 1:
            return None
        out = [0] * len(row)
        s, e, c = keep[0]
        out[s:e] = [c] * (e - s)
        return out

    def sample(r: random.Random, n: int) -> Row:
        c = _colour(r)
        row = _one_block(r, n, colour=c, min_len=4)
        for _ in range(r.randint(1, 3)):
            i = r.randrange(len(row))
            if row[i] == 0 and (i == 0 or row[i - 1] == 0) and (i == len(row) - 1 or row[i + 1] == 0):
                row[i] = c
        return row

    return Rule(apply, sample, "Removes isolated single cells (noise) and keeps the one long block.")


def _keep_largest(rng: random.Random) -> Rule:
    def apply(row: Row) -> Row | None:
        bs = blocks(row)
        sizes = [e - s for s, e, _ in bs]
        if not bs or sizes.count(max(sizes)) > 1:
            return None
        s, e, c = bs[sizes.index(max(sizes))]
        out = [0] * len(row)
        out[s:e] = [c] * (e - s)
        return out

    return Rule(apply, lambda r, n: _many_blocks(r, n, r.randint(2, 4)), "Keeps only the largest block.")


def _block_and_marker(row: Row, marker: int) -> tuple[tuple[int, int, int], int] | None:
    """The row's one block (``(start, end, colour)``, not of the marker's colour) and its one
    marker cell; ``None`` unless there is exactly one of each."""
    bs = [b for b in blocks(row) if b[2] != marker]
    ms = [i for i, v in enumerate(row) if v == marker]
    return (bs[0], ms[0]) if len(bs) == 1 and len(ms) == 1 else None


def _row_with_marker(r: random.Random, n: int, size: int, marker: int) -> Row:
    """A row of ``n`` cells: a block of ``size`` cells in its first half and the marker cell
    somewhere after it, mirrored half of the time."""
    row = [0] * n
    s = r.randint(0, n // 2 - size - 1)
    row[s : s + size] = [_colour(r, (marker,))] * size
    row[r.randint(s + size + 1, n - 1)] = marker
    return row[::-1] if r.random() < 0.5 else row


def _move_to_marker(rng: random.Random) -> Rule:
    marker = _colour(rng)

    def apply(row: Row) -> Row | None:
        found = _block_and_marker(row, marker)
        if found is None:
            return None
        (s, e, c), m = found
        out = [0] * len(row)
        out[m] = marker
        size = e - s
        start = m - size if s < m else m + 1  # slide until the block touches the marker
        if start < 0 or start + size > len(row):
            return None
        out[start : start + size] = [c] * size
        return out

    def sample(r: random.Random, n: int) -> Row:
        n = max(n, 8)
        return _row_with_marker(r, n, r.randint(1, min(4, n // 2 - 2)), marker)

    return Rule(apply, sample, f"Slides the block until it touches the marker cell of colour {marker}.")


def _gravity(rng: random.Random) -> Rule:
    right = rng.random() < 0.5

    def apply(row: Row) -> Row | None:
        cells = [v for v in row if v]
        pad = [0] * (len(row) - len(cells))
        return pad + cells if right else cells + pad

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(1, 3)),
        f"Packs all coloured cells against the {'right' if right else 'left'} edge, keeping their order.",
    )


def _extend(rng: random.Random) -> Rule:
    right = rng.random() < 0.5

    def apply(row: Row) -> Row | None:
        bs = blocks(row)
        if len(bs) != 1:
            return None
        s, e, c = bs[0]
        out = list(row)
        if right:
            out[s:] = [c] * (len(row) - s)
        else:
            out[:e] = [c] * e
        return out

    return Rule(
        apply,
        lambda r, n: _one_block(r, n, margin=2),
        f"Extends the block to the {'right' if right else 'left'} edge.",
    )


def _scale(rng: random.Random) -> Rule:
    k = rng.choice([2, 3])

    def apply(row: Row) -> Row | None:
        return [v for v in row for _ in range(k)]

    def sample(r: random.Random, n: int) -> Row:
        m = r.randint(3, max(4, min(8, n // 2)))  # the output is k times longer
        row = [r.choice([0, 0, _colour(r)]) for _ in range(m)]
        if not any(row):  # an all-background row scales to all background: no signal
            row[r.randrange(m)] = _colour(r)
        return row

    return Rule(apply, sample, f"Repeats every cell {k} times.")


def _swap_ends(rng: random.Random) -> Rule:
    def apply(row: Row) -> Row | None:
        cells = [i for i, v in enumerate(row) if v]
        if not cells:
            return None
        s, e = cells[0], cells[-1] + 1
        out = list(row)
        out[s:e] = row[s:e][::-1]
        return out

    def sample(r: random.Random, n: int) -> Row:
        body = _colour(r)
        head = _colour(r, (body,))
        row = _one_block(r, n, colour=body, min_len=3)
        s = next(i for i, v in enumerate(row) if v)
        row[s] = head
        return row

    return Rule(apply, sample, "Reverses the coloured segment, so its odd end cell moves to the other end.")


def _copy_pattern(rng: random.Random) -> Rule:
    def apply(row: Row) -> Row | None:
        bs = blocks(row)
        if not bs:
            return None
        pattern_start = bs[0][0]
        pattern_end = pattern_start
        while pattern_end < len(row) and row[pattern_end] != 0:
            pattern_end += 1
        pattern = row[pattern_start:pattern_end]
        half = len(pattern) // 2
        out = list(row)
        for i in range(pattern_end, len(row)):
            if row[i] and (i == 0 or row[i - 1] == 0) and (i + 1 == len(row) or row[i + 1] == 0):
                s = i - half
                if s < pattern_end or s + len(pattern) > len(row):
                    return None
                out[s : s + len(pattern)] = pattern
        return out

    def sample(r: random.Random, n: int) -> Row:
        n = max(n, 12)
        size = r.choice([3, 3, 5])
        c = _colour(r)
        row = [0] * n
        row[1 : 1 + size] = [c] * size
        pos = 1 + size + size
        while pos + size < n - 1 and r.random() < 0.8:
            row[pos + size // 2] = _colour(r) if r.random() < 0.3 else c
            pos += size + r.randint(1, 3)
        return row

    return Rule(apply, sample, "Replaces each single cell with a copy of the first block, centred on it.")


def _recolour_by_count(rng: random.Random) -> Rule:
    palette = rng.sample(range(1, 10), 4)
    base = palette.pop()
    mapping = {size: palette[i] for i, size in enumerate((1, 2, 3))}

    def apply(row: Row) -> Row | None:
        out = list(row)
        for s, e, _ in blocks(row):
            if e - s not in mapping:
                return None
            out[s:e] = [mapping[e - s]] * (e - s)
        return out

    text = ", ".join(f"size {k} -> {v}" for k, v in mapping.items())
    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(2, 4), colour=base, sizes=(1, 3)),
        f"Paints each block by its size ({text}).",
    )


def _sort_blocks(rng: random.Random) -> Rule:
    ascending = rng.random() < 0.5

    def apply(row: Row) -> Row | None:
        bs = blocks(row)
        if len(bs) < 2 or any(bs[i][1] == bs[i + 1][0] for i in range(len(bs) - 1)):
            return None  # touching blocks of two colours would read as one object
        ordered = sorted(bs, key=lambda b: b[1] - b[0], reverse=not ascending)
        gaps = [bs[i + 1][0] - bs[i][1] for i in range(len(bs) - 1)] + [0]
        out, pos = [0] * len(row), bs[0][0]
        for (s, e, c), gap in zip(ordered, gaps, strict=True):
            out[pos : pos + e - s] = [c] * (e - s)
            pos += e - s + gap  # the gaps stay where they were, only the blocks trade places
        return out

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(2, 3), sizes=(1, 5), distinct_sizes=True),
        f"Reorders the blocks by size, {'smallest' if ascending else 'largest'} first, keeping the gaps.",
    )


def _mirror_marker(rng: random.Random) -> Rule:
    marker = _colour(rng)
    keep = rng.random() < 0.5

    def apply(row: Row) -> Row | None:
        ms = [i for i, v in enumerate(row) if v == marker]
        bs = [b for b in blocks(row) if b[2] != marker]
        if len(ms) != 1 or len(bs) != 1:
            return None
        m, (s, e, c) = ms[0], bs[0]
        lo, hi = 2 * m - e + 1, 2 * m - s + 1  # the block reflected about the marker cell
        if lo < 0 or hi > len(row):
            return None
        out = list(row) if keep else [0] * len(row)
        out[m] = marker
        out[lo:hi] = [c] * (hi - lo)
        return out

    def sample(r: random.Random, n: int) -> Row:
        n = max(n, 9)
        m = r.randint(n // 2 - 1, n // 2 + 1)  # near the middle: room on both sides
        size = r.randint(1, min(4, m - 1))
        gap = r.randint(0, m - size - 1)
        row = [0] * n
        row[m] = marker
        row[m - gap - size : m - gap] = [_colour(r, (marker,))] * size
        return row[::-1] if r.random() < 0.5 else row

    verb = "Copies" if keep else "Moves"
    return Rule(
        apply, sample, f"{verb} the block to its mirror image about the marker cell of colour {marker}."
    )


def _recolour_end_block(rng: random.Random) -> Rule:
    last = rng.random() < 0.5
    c = _colour(rng)

    def apply(row: Row) -> Row | None:
        bs = blocks(row)
        if len(bs) < 2:
            return None
        s, e, _ = bs[-1] if last else bs[0]
        out = list(row)
        out[s:e] = [c] * (e - s)
        return out

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(2, 4), colour=_colour(r, (c,))),
        f"Paints the {'last' if last else 'first'} block with colour {c}.",
    )


def _recolour_by_parity(rng: random.Random) -> Rule:
    odd, even = rng.sample(range(1, 10), 2)
    base = _colour(rng, (odd, even))

    def apply(row: Row) -> Row | None:
        out = list(row)
        for s, e, _ in blocks(row):
            out[s:e] = [odd if (e - s) % 2 else even] * (e - s)
        return out

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(2, 4), colour=base, sizes=(1, 5)),
        f"Paints blocks of odd size {odd} and blocks of even size {even}.",
    )


def _recolour_by_compare(rng: random.Random) -> Rule:
    threshold = rng.randint(2, 4)
    c = _colour(rng)
    base = _colour(rng, (c,))

    def apply(row: Row) -> Row | None:
        out = list(row)
        for s, e, _ in blocks(row):
            if e - s >= threshold:
                out[s:e] = [c] * (e - s)
        return out

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(2, 4), colour=base, sizes=(1, 6)),
        f"Paints every block of at least {threshold} cells with colour {c}.",
    )


def _swap_colours(rng: random.Random) -> Rule:
    a, b = rng.sample(range(1, 10), 2)

    def apply(row: Row) -> Row | None:
        if a not in row and b not in row:
            return None
        return [b if v == a else a if v == b else v for v in row]

    def sample(r: random.Random, n: int) -> Row:
        row = _many_blocks(r, n, r.randint(2, 4), colour=a)
        for s, e, _ in blocks(row):
            if r.random() < 0.5:
                row[s:e] = [b] * (e - s)
        return row

    return Rule(apply, sample, f"Swaps colours {a} and {b}.")


def _remove_colour(rng: random.Random) -> Rule:
    c = _colour(rng)

    def apply(row: Row) -> Row | None:
        return [0 if v == c else v for v in row]

    def sample(r: random.Random, n: int) -> Row:
        row = _many_blocks(r, n, r.randint(2, 4))
        bs = blocks(row)
        s, e, _ = r.choice(bs)
        row[s:e] = [c] * (e - s)  # at least one block of the removed colour
        return row

    return Rule(apply, sample, f"Removes every cell of colour {c}.")


def _grow(rng: random.Random) -> Rule:
    def apply(row: Row) -> Row | None:
        out = list(row)
        for s, e, c in blocks(row):
            for i in (s - 1, e):
                if 0 <= i < len(row):
                    if out[i] not in (0, c):
                        return None  # two blocks would merge
                    out[i] = c
        return out

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(1, 3), sizes=(1, 4)),
        "Grows every block by one cell on each side.",
    )


def _shrink(rng: random.Random) -> Rule:
    def apply(row: Row) -> Row | None:
        out = list(row)
        for s, e, _ in blocks(row):
            out[s] = out[e - 1] = 0
        return out

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(1, 3), sizes=(3, 7)),
        "Shrinks every block by one cell at each end.",
    )


def _extend_to_marker(rng: random.Random) -> Rule:
    marker = _colour(rng)

    def apply(row: Row) -> Row | None:
        found = _block_and_marker(row, marker)
        if found is None:
            return None
        (s, e, c), m = found
        out = list(row)
        if s > m:
            out[m + 1 : s] = [c] * (s - m - 1)
        else:
            out[e:m] = [c] * (m - e)
        return out

    def sample(r: random.Random, n: int) -> Row:
        return _row_with_marker(r, max(n, 8), r.randint(1, 3), marker)

    return Rule(apply, sample, f"Extends the block until it touches the marker cell of colour {marker}.")


def _count_bar(rng: random.Random) -> Rule:
    c = _colour(rng)
    right = rng.random() < 0.3

    def apply(row: Row) -> Row | None:
        k = len(blocks(row))
        out = [0] * len(row)
        if right:
            out[len(row) - k :] = [c] * k
        else:
            out[:k] = [c] * k
        return out

    return Rule(
        apply,
        lambda r, n: _many_blocks(r, n, r.randint(1, 5), sizes=(1, 3)),
        f"Draws one cell of colour {c} per block, packed at the {'right' if right else 'left'} end.",
    )


#: The primitives: every family a training run may use, alone or composed (see :data:`HELD_OUT`).
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("shift", _shift),
        Family("mirror", _mirror),
        Family("recolour_all", _recolour_all),
        Family("recolour_by_size", _recolour_by_size),
        Family("recolour_by_count", _recolour_by_count),
        Family("recolour_end_block", _recolour_end_block),
        Family("recolour_by_parity", _recolour_by_parity),
        Family("recolour_by_compare", _recolour_by_compare),
        Family("swap_colours", _swap_colours),
        Family("remove_colour", _remove_colour),
        Family("fill_between", _fill_between),
        Family("hollow", _hollow),
        Family("grow", _grow),
        Family("shrink", _shrink),
        Family("denoise", _denoise),
        Family("keep_largest", _keep_largest),
        Family("move_to_marker", _move_to_marker),
        Family("extend_to_marker", _extend_to_marker),
        Family("mirror_marker", _mirror_marker),
        Family("gravity", _gravity),
        Family("extend", _extend),
        Family("scale", _scale),
        Family("swap_ends", _swap_ends),
        Family("copy_pattern", _copy_pattern),
        Family("sort_blocks", _sort_blocks),
        Family("count_bar", _count_bar),
    ]
}

#: Families whose rules keep the row length (safe as a later step of a composition).
LENGTH_PRESERVING = [name for name in FAMILIES if name != "scale"]

#: Held-out families: new compositions of seen primitives that training never draws (neither the
#: chain nor, anywhere inside a longer chain, the same two steps next to each other in either
#: order). They measure whether the model carries what it learned to a rule it never saw.
HELD_OUT: dict[str, tuple[str, ...]] = {
    "shift_hollow": ("shift", "hollow"),
    "denoise_recolour": ("denoise", "recolour_all"),
    "largest_extend": ("keep_largest", "extend"),
    "fill_recolour": ("fill_between", "recolour_all"),
    "mirror_paint_end": ("mirror", "recolour_end_block"),
    "grow_parity": ("grow", "recolour_by_parity"),
}
#: Adjacent step pairs training never composes (each held-out pair, both orders).
BANNED_PAIRS = frozenset(p for chain in HELD_OUT.values() for p in (chain[:2], chain[1::-1]))
#: Every name :func:`sample_task` accepts as ``family``.
ALL_FAMILIES = sorted(FAMILIES) + sorted(HELD_OUT)


def _compose(steps: list[Rule]) -> Rule:
    def apply(row: Row) -> Row | None:
        for step in steps:
            mid = step.apply(row)
            if mid is None:
                return None
            row = mid
        return row

    text = " Then: ".join(step.description for step in steps)
    return Rule(apply, steps[0].sample_input, text)


def _pick(rng: random.Random, names: list[str], weights: Mapping[str, float] | None) -> str:
    # Without weights, rng.choice as always: runs started before weights existed resume exactly.
    if not weights:
        return rng.choice(names)
    return rng.choices(names, [weights.get(n, 1.0) for n in names])[0]


def draw_chain(rng: random.Random, depth: int, weights: Mapping[str, float] | None = None) -> tuple[str, ...]:
    """A training chain of ``depth`` primitive names with no held-out pair next to each other.

    ``weights`` (primitive name -> relative weight, 1.0 where absent) draws each step in proportion
    to its weight instead of uniformly: training spends more of its episodes where the model errs.
    """
    chain = [_pick(rng, sorted(FAMILIES), weights)]
    while len(chain) < depth:
        allowed = [n for n in LENGTH_PRESERVING if (chain[-1], n) not in BANNED_PAIRS and n != chain[-1]]
        chain.append(_pick(rng, allowed, weights))
    return tuple(chain)


def draw_rule(
    rng: random.Random,
    family: str | None = None,
    *,
    compose_p: float = 0.0,
    deep_p: float = 0.0,
    weights: Mapping[str, float] | None = None,
) -> tuple[str, Rule]:
    """Draw a family (or use ``family``) and one concrete rule of it.

    Args:
        rng: The only source of randomness.
        family: A primitive, a held-out family, or ``None`` for a random training chain.
        compose_p: Without ``family``: chance of a composition (two steps, or three with
            ``deep_p``) instead of a single primitive.
        deep_p: Chance that a composition is three steps deep.
        weights: Without ``family``: relative weights of the primitives a chain draws
            (:func:`draw_chain`).

    Returns:
        The family's name (``a+b`` for a composed training chain) and the rule.
    """
    if family is not None:
        if family in HELD_OUT:
            return family, _compose([FAMILIES[n].draw(rng) for n in HELD_OUT[family]])
        if family not in FAMILIES:
            raise KeyError(f"unknown family {family!r}; known: {', '.join(ALL_FAMILIES)}")
        return family, FAMILIES[family].draw(rng)
    depth = 1
    if rng.random() < compose_p:
        depth = 3 if rng.random() < deep_p else 2
    chain = draw_chain(rng, depth, weights)
    rule = FAMILIES[chain[0]].draw(rng) if depth == 1 else _compose([FAMILIES[n].draw(rng) for n in chain])
    return "+".join(chain), rule


def _discriminates(rng: random.Random, name: str, query: Row, target: Row) -> bool:
    """Whether a rival rule (a sibling of the same chain, or another family) maps ``query`` elsewhere.

    A query whose output two plausible rules agree on can be answered without reading the
    demonstrations; training prefers queries where they disagree.
    """
    chain = name.split("+") if name not in HELD_OUT else list(HELD_OUT[name])
    for _ in range(4):
        if rng.random() < 0.5:
            rival = _compose([FAMILIES[n].draw(rng) for n in chain])
        else:
            rival = FAMILIES[rng.choice(LENGTH_PRESERVING)].draw(rng)
        out = rival.apply(query)
        if out is not None and out != target:
            return True
    return False


def sample_pairs(
    rng: random.Random,
    rule: Rule,
    count: int,
    *,
    lengths: tuple[int, int] = DEFAULT_LENGTHS,
    max_tries: int = 200,
) -> list[tuple[Row, Row]]:
    """``count`` distinct (input, output) pairs of ``rule`` where input and output differ.

    Each input is drawn at a row length from ``lengths`` (inclusive; samplers may lengthen a row
    that cannot hold their layout).
    """
    lo, hi = max(MIN_LENGTH, lengths[0]), max(MIN_LENGTH, lengths[1])
    pairs: list[tuple[Row, Row]] = []
    seen: set[tuple[int, ...]] = set()
    for _ in range(max_tries):
        row = rule.sample_input(rng, rng.randint(lo, hi))
        out = rule.apply(row)
        if out is None or out == row or tuple(row) in seen or len(out) > 64:
            continue
        seen.add(tuple(row))
        pairs.append((row, out))
        if len(pairs) == count:
            return pairs
    raise RuntimeError("could not draw enough examples for this rule")  # a generator bug


def sample_task(
    rng: random.Random,
    family: str | None = None,
    n_train: int = 3,
    n_test: int = 1,
    *,
    compose_p: float = 0.0,
    deep_p: float = 0.0,
    discriminate: bool = False,
    lengths: tuple[int, int] = DEFAULT_LENGTHS,
    weights: Mapping[str, float] | None = None,
) -> Task:
    """One task: ``n_train`` demonstrations and ``n_test`` queries (with targets) of one rule.

    Args:
        rng: The only source of randomness: the same state gives the same task.
        family: A name from :data:`FAMILIES` or :data:`HELD_OUT`, or ``None`` for a random
            training chain (never a held-out one).
        n_train: Demonstrations.
        n_test: Queries, each with its target.
        compose_p: Chance of a composition (only when ``family`` is ``None``).
        deep_p: Chance that a composition is three steps deep.
        discriminate: Prefer a first query that a rival rule maps to another output, so only
            the demonstrations tell which rule applies (training uses this).
        lengths: Range of row lengths for the inputs (a training curriculum starts short).
        weights: Relative weights of the primitives a random training chain draws (only when
            ``family`` is ``None``; :func:`draw_chain`).

    Returns:
        A ``grid`` task whose ``type`` is the family (``a+b`` for a composed chain) and whose
        function docstring states the rule in words.
    """
    for _ in range(50):
        name, rule = draw_rule(rng, family, compose_p=compose_p, deep_p=deep_p, weights=weights)
        try:
            pairs = sample_pairs(rng, rule, n_train + n_test, lengths=lengths)
        except RuntimeError:
            continue  # some parameter draws rarely fit; draw another rule
        if discriminate:
            for j in range(len(pairs) - 1, -1, -1):
                if _discriminates(rng, name, *pairs[j]):
                    pairs.append(pairs.pop(j)) if n_test == 1 else pairs.insert(n_train, pairs.pop(j))
                    break
        for inp, out in pairs:
            check_value("grid", [inp], "input")
            check_value("grid", [out], "output")
        return Task(
            id=f"{name}-{rng.getrandbits(32):08x}",
            kind="grid",
            type=name,
            function=MockFunction(
                name="transform",
                signature="transform(grid: list[list[int]]) -> list[list[int]]",
                docstring=rule.description,
            ),
            train=[Example(input=[i], output=[o]) for i, o in pairs[:n_train]],
            test=[Query(input=[i], target=[o]) for i, o in pairs[n_train:]],
        )
    raise RuntimeError(f"family {family!r} kept failing to produce a task")


# --- lists of numbers ---------------------------------------------------------------------------
#
# The compact format writes a list as ``8,3,6``; these families teach the embedded model that a list
# is a row too: the same reading of demonstrations, on numbers instead of colours.

ListRule = Callable[[list[int]], list[int] | None]


#: The rules of ``list`` tasks (:func:`sample_list_task` draws one at random).
LIST_RULES = ("sort", "sort_desc", "reverse", "add", "rotate", "keep_even", "keep_odd", "dedupe",
              "drop_first", "double", "max_first", "swap_pairs")  # fmt: skip


def _list_rule(rng: random.Random) -> tuple[str, str, ListRule]:
    kind = rng.choice(list(LIST_RULES))
    k = rng.randint(1, 3)
    rules: dict[str, tuple[str, ListRule]] = {
        "sort": ("Returns the numbers in ascending order.", lambda xs: sorted(xs)),
        "sort_desc": ("Returns the numbers in descending order.", lambda xs: sorted(xs, reverse=True)),
        "reverse": ("Returns the list reversed.", lambda xs: xs[::-1]),
        "add": (f"Adds {k} to every number.", lambda xs: [x + k for x in xs]),
        "rotate": (f"Rotates the list left by {k}.", lambda xs: xs[k % len(xs) :] + xs[: k % len(xs)]),
        "keep_even": ("Keeps the even numbers.", lambda xs: [x for x in xs if x % 2 == 0] or None),
        "keep_odd": ("Keeps the odd numbers.", lambda xs: [x for x in xs if x % 2] or None),
        "dedupe": ("Drops repeated numbers, keeping first occurrences.", lambda xs: list(dict.fromkeys(xs))),
        "drop_first": (f"Drops the first {k} numbers.", lambda xs: xs[k:] or None),
        "double": ("Doubles every number.", lambda xs: [2 * x for x in xs]),
        "max_first": ("Moves the largest number to the front.",
                      lambda xs: [max(xs)] + [x for i, x in enumerate(xs) if i != xs.index(max(xs))]),
        "swap_pairs": ("Swaps neighbours pairwise.",
                       lambda xs: [xs[i ^ 1] if (i ^ 1) < len(xs) else xs[i] for i in range(len(xs))]),
    }  # fmt: skip
    return kind, *rules[kind]


def sample_list_task(rng: random.Random, n_train: int = 3, n_test: int = 1) -> Task:
    """One ``list`` task of small whole numbers (sort, reverse, add k, rotate, filter, ...)."""
    for _ in range(50):
        kind, description, fn = _list_rule(rng)
        pairs: list[tuple[list[int], list[int]]] = []
        seen: set[tuple[int, ...]] = set()
        for _ in range(100):
            xs = [rng.randint(0, 20) for _ in range(rng.randint(3, 8))]
            out = fn(list(xs))
            if out is None or out == xs or tuple(xs) in seen:
                continue
            seen.add(tuple(xs))
            pairs.append((xs, list(out)))
            if len(pairs) == n_train + n_test:
                break
        if len(pairs) < n_train + n_test:
            continue
        return Task(
            id=f"list_{kind}-{rng.getrandbits(32):08x}",
            kind="list",
            type=f"list_{kind}",
            function=MockFunction(name="transform", signature="transform(xs: list[int]) -> list[int]",
                                  docstring=description),
            train=[Example(input=i, output=o) for i, o in pairs[:n_train]],
            test=[Query(input=i, target=o) for i, o in pairs[n_train:]],
        )  # fmt: skip
    raise RuntimeError("list rules kept failing")  # a generator bug


def write_suite(
    out: Path, *, per_family: int, seed: int, n_train: int = 3, families: list[str] | None = None
) -> int:
    """Write ``per_family`` fresh tasks of each family to ``out/<family>/<id>.json``.

    A benchmark suite for ``python -m graph.bench --tasks out``: the primitives by default (held-in),
    or any names from :data:`ALL_FAMILIES` (``--held-out``: the families training never draws). A
    seed other than the training seed gives episodes the model never saw. Returns the number of
    tasks written.
    """
    rng = random.Random(seed)
    count = 0
    for family in families or sorted(FAMILIES):
        folder = out / family
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(per_family):
            task = sample_task(rng, family, n_train=n_train)
            (folder / f"{task.id}.json").write_text(task.model_dump_json(exclude_none=True) + "\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    """``python -m tasks.generators --out DIR [--per-family N] [--seed S] [--held-out]``: write a suite."""
    parser = argparse.ArgumentParser(prog="python -m tasks.generators", description=write_suite.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder to write (sub-folder per family)")
    parser.add_argument("--per-family", type=int, default=10, help="tasks per family (default 10)")
    parser.add_argument("--seed", type=int, default=1000, help="suite seed (default 1000)")
    parser.add_argument(
        "--held-out", action="store_true", help="the held-out families instead of the primitives"
    )
    parser.add_argument("--demos", type=int, default=3, help="demonstrations per task (default 3)")
    args = parser.parse_args(argv)
    if args.per_family < 1:
        parser.error("--per-family must be at least 1")
    if args.demos < 1:
        parser.error("--demos must be at least 1")
    families = sorted(HELD_OUT) if args.held_out else None
    count = write_suite(
        args.out, per_family=args.per_family, seed=args.seed, n_train=args.demos, families=families
    )
    print(f"wrote {count} tasks to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
