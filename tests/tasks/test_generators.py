"""Procedural families: valid, deterministic, one rule per task, and rules that differ."""

from __future__ import annotations

import itertools
import random

import pytest

from tasks.generators import (
    ALL_FAMILIES,
    BANNED_PAIRS,
    FAMILIES,
    HELD_OUT,
    blocks,
    draw_chain,
    draw_rule,
    sample_list_task,
    sample_task,
)
from tasks.schema import check_value


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_family_yields_valid_tasks_of_one_rule(family):
    rng = random.Random(1)
    for _ in range(20):
        task = sample_task(rng, family, n_train=3, n_test=2)
        assert task.type == family and task.kind == "grid"
        pairs = [(e.input, e.output) for e in task.train] + [(q.input, q.target) for q in task.test]
        assert len({str(i) for i, _ in pairs}) == len(pairs)  # distinct inputs
        for inp, out in pairs:
            check_value("grid", inp, "input")
            check_value("grid", out, "output")
            assert inp != out
            assert any(any(row) for row in inp)  # never an all-background input


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_one_task_shares_one_rule(family):
    """Re-drawing with the same seed gives the rule; it maps every input of the task correctly."""
    seed_rng = random.Random(7)
    state = seed_rng.getstate()
    task = sample_task(seed_rng, family)
    seed_rng.setstate(state)
    _, rule = draw_rule(seed_rng, family)
    for example in [*task.train, *task.test]:
        target = example.output if hasattr(example, "output") else example.target
        assert [rule.apply(example.input[0])] == target


def test_deterministic_per_seed_and_different_across_seeds():
    a = [sample_task(random.Random(3), compose_p=0.3) for _ in range(1)]
    b = [sample_task(random.Random(3), compose_p=0.3) for _ in range(1)]
    assert a == b
    assert sample_task(random.Random(3)) != sample_task(random.Random(4))


def test_rules_of_one_family_disagree_on_some_input():
    """Demonstrations matter: two rules of a family map the same input differently."""
    rng = random.Random(0)
    for family in [
        "shift",
        "recolour_all",
        "gravity",
        "extend",
        "recolour_by_count",
        "recolour_end_block",
        "sort_blocks",
        "mirror_marker",
        "fill_between",
        "scale",
    ]:
        outputs = set()
        _, first = draw_rule(rng, family)
        row = first.sample_input(rng, 16)
        for _ in range(30):
            _, rule = draw_rule(rng, family)
            out = rule.apply(row)
            if out is not None:
                outputs.add(tuple(out))
        assert len(outputs) > 1, family


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_short_rows_for_the_curriculum(family):
    """Every family still draws valid tasks when asked for the shortest rows."""
    rng = random.Random(2)
    for _ in range(10):
        task = sample_task(rng, family, n_train=4, lengths=(6, 8))
        for example in task.train:
            check_value("grid", example.output, "output")
            assert len(example.input[0]) <= 25  # only layouts that need room lengthen the row


def test_row_lengths_follow_the_requested_range():
    rng = random.Random(4)
    widths = {len(sample_task(rng, "fill_between", lengths=(10, 11)).train[0].input[0]) for _ in range(30)}
    assert widths == {10, 11}


def test_new_families_by_hand():
    """Hand-checked cases of the rules whose geometry is easiest to get wrong."""
    rng = random.Random(0)
    for _ in range(20):
        _, rule = draw_rule(rng, "sort_blocks")
        out = rule.apply([0, 5, 0, 0, 3, 3, 3, 0, 7, 7, 0])
        assert out in ([0, 5, 0, 0, 7, 7, 0, 3, 3, 3, 0], [0, 3, 3, 3, 0, 0, 7, 7, 0, 5, 0])
        _, rule = draw_rule(rng, "mirror_marker")
        marker = next(c for c in range(1, 10) if f"colour {c}." in rule.description)
        other = 1 if marker != 1 else 2
        row = [0, other, other, 0, marker, 0, 0, 0, 0]
        moved = [0, 0, 0, 0, marker, 0, other, other, 0]
        assert rule.apply(row) in (moved, [0, other, other, 0, marker, 0, other, other, 0])


def test_compositions_are_named_after_both_steps():
    rng = random.Random(5)
    names = {sample_task(rng, compose_p=1.0).type for _ in range(30)}
    assert all("+" in n for n in names)


def test_blocks():
    assert blocks([0, 3, 3, 0, 5, 2, 2]) == [(1, 3, 3), (4, 5, 5), (5, 7, 2)]


def test_suite_on_disk_loads_with_families_as_types(tmp_path):
    from tasks.generators import write_suite
    from tasks.loaders import load_task_dir

    assert write_suite(tmp_path, per_family=2, seed=9) == 2 * len(FAMILIES)
    tasks = load_task_dir(tmp_path)
    assert {t.type for t in tasks} == set(FAMILIES)
    assert all(t.test[0].target is not None for t in tasks)


def test_held_out_families_are_compositions_of_primitives_training_never_chains():
    assert set(HELD_OUT).isdisjoint(FAMILIES)
    for chain in HELD_OUT.values():
        assert all(step in FAMILIES for step in chain)
        assert chain[:2] in BANNED_PAIRS and chain[1::-1] in BANNED_PAIRS
    rng = random.Random(11)
    for _ in range(2000):
        chain = draw_chain(rng, rng.choice([2, 3]))
        assert not set(itertools.pairwise(chain)) & BANNED_PAIRS
    names = {sample_task(rng, compose_p=1.0, deep_p=0.5).type for _ in range(300)}
    assert not names & set(HELD_OUT)
    assert any(n.count("+") == 2 for n in names)  # three-deep chains occur


def test_held_out_task_applies_its_steps_in_order():
    task = sample_task(random.Random(3), "shift_hollow")
    for example in task.train:
        row, out = example.input[0], example.output[0]
        assert len([c for c in out if c]) <= len([c for c in row if c])  # hollowed
        assert out != row


def test_discriminating_queries_are_deterministic_and_valid():
    a = sample_task(random.Random(5), compose_p=0.5, discriminate=True, n_train=4)
    b = sample_task(random.Random(5), compose_p=0.5, discriminate=True, n_train=4)
    assert a == b
    assert len(a.train) == 4 and a.test[0].target is not None


def test_list_tasks_are_valid_and_deterministic():
    rng = random.Random(2)
    for _ in range(50):
        task = sample_list_task(rng, n_train=3)
        assert task.kind == "list" and task.type.startswith("list_")
        assert all(e.input != e.output for e in task.train)
    assert sample_list_task(random.Random(9)) == sample_list_task(random.Random(9))


def test_held_out_suite_from_the_command_line(tmp_path, capsys):
    from tasks.generators import main
    from tasks.loaders import load_task_dir

    assert main(["--out", str(tmp_path), "--per-family", "2", "--held-out", "--seed", "4"]) == 0
    assert {t.type for t in load_task_dir(tmp_path)} == set(HELD_OUT)


def test_unweighted_chains_are_the_stream_runs_were_trained_on():
    # Runs resume bit-exactly only if their batches are drawn as before: without weights the
    # chains are the same draws as before weights existed (pinned ids from a fixed seed).
    rng = random.Random(5)
    ids = [sample_task(rng, n_train=3, compose_p=0.5, deep_p=0.3).id for _ in range(4)]
    assert ids == [
        "sort_blocks-b4653252",
        "copy_pattern+count_bar+hollow-1757905e",
        "mirror_marker+recolour_by_count-02f6f33d",
        "mirror+sort_blocks-28f74587",
    ]
    assert [draw_chain(random.Random(s), 3, {}) for s in range(20)] == [
        draw_chain(random.Random(s), 3) for s in range(20)
    ]


def test_weighted_chains_draw_heavy_primitives_more_and_keep_held_out_pairs_out():
    heavy = {name: (4.0 if name == "mirror" else 1.0) for name in FAMILIES}
    rng = random.Random(0)
    counts = {"weighted": 0, "uniform": 0}
    for _ in range(2000):
        chain = draw_chain(rng, 2, heavy)
        assert not set(itertools.pairwise(chain)) & BANNED_PAIRS
        counts["weighted"] += "mirror" in chain
        counts["uniform"] += "mirror" in draw_chain(rng, 2)
    # 1/26 -> 4/29 per step: about three times as many chains hold the heavy primitive
    assert counts["weighted"] > 2.5 * counts["uniform"] > 0
    a = sample_task(random.Random(3), compose_p=1.0, weights=heavy)
    assert a == sample_task(random.Random(3), compose_p=1.0, weights=heavy)  # still deterministic
