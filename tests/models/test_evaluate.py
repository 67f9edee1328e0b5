"""Teacher-forced exact match is greedy generation's exact match, query by query."""

from __future__ import annotations

import pytest

from models.embedded import EMBEDDED_DIR
from models.evaluate import episodes_of, evaluation_sets, forward_episodes
from models.tokenizer import vocabulary
from tasks.generators import FAMILIES, HELD_OUT, LIST_RULES


@pytest.mark.skipif(not (EMBEDDED_DIR / "config.json").exists(), reason="no shipped checkpoint")
def test_teacher_forced_hits_equal_greedy_generation():
    from models.base import PromptParts
    from models.hf_backend import HFBackend
    from tasks.scoring import exact_match

    backend = HFBackend(EMBEDDED_DIR)
    sets = evaluation_sets(per_family=2, arc_dir=None)
    tasks = sets["bundled"] + sets["held_out"] + sets["held_in"][:6]
    vocab = vocabulary()
    forced = forward_episodes(
        backend.model, [e for t in tasks for e in episodes_of(t, vocab)], vocab["<pad>"]
    )
    generated = []
    for t in tasks:
        for q in t.test:
            parts = PromptParts(kind=t.kind, function=t.function, demos=t.train[:3], query=q.input)
            text = backend.generate(backend.renderer.render(parts), n=1, temperature=0.0).samples[0].text
            generated.append(exact_match(t.kind, backend.renderer.parse(text, t.kind), q.target))
    assert [f[0] for f in forced] == generated
    assert any(generated)  # the comparison covers hits as well as misses


def test_evaluation_sets_are_fixed_and_cover_every_held_out_family():
    a = evaluation_sets(per_family=3, arc_dir=None)
    b = evaluation_sets(per_family=3, arc_dir=None)
    assert a["held_out"] == b["held_out"] and a["held_in"] == b["held_in"]
    assert {t.type for t in a["held_out"]} == set(HELD_OUT)
    assert not {t.type for t in a["held_in"]} & set(HELD_OUT)


def test_primitives_set_covers_every_family_and_list_rule_evenly():
    tasks = evaluation_sets(per_family=1, arc_dir=None, primitives=2)["primitives"]
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.type or "?"] = counts.get(t.type or "?", 0) + 1
    assert counts == {**dict.fromkeys(FAMILIES, 2), **{f"list_{k}": 2 for k in LIST_RULES}}
    assert not set(counts) & set(HELD_OUT)
    again = evaluation_sets(per_family=1, arc_dir=None, primitives=2)["primitives"]
    assert again == tasks  # fixed: the same tasks every call


def test_primitives_are_reported_per_type():
    from models.embedded import EmbeddedConfig, build_model
    from models.evaluate import exact_match_rates

    model = build_model(EmbeddedConfig(hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64))
    sets = {"primitives": evaluation_sets(per_family=1, arc_dir=None, primitives=1)["primitives"]}
    report = exact_match_rates(model, sets, vocabulary())
    assert set(report["primitives_by_type"]) == {t.type for t in sets["primitives"]}
    assert report["primitives"] == 0.0  # an untrained model gets none right


def test_command_reports_primitives_of_a_checkpoint(tmp_path, capsys):
    import json

    from models.embedded import EmbeddedConfig, build_model, save_checkpoint
    from models.evaluate import main

    tiny = build_model(EmbeddedConfig(hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64))
    save_checkpoint(tiny, tmp_path / "ckpt", extra={})
    no_arc = str(tmp_path / "none")
    assert main([str(tmp_path / "ckpt"), "--per-family", "1", "--eval-arc", no_arc, "--primitives", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"held_out", "held_in", "bundled", "primitives", "primitives_by_type"} <= set(report)
    assert "arc" not in report  # no 1D-ARC folder: skipped


def test_primitive_errors_cover_every_primitive_from_held_in_chains():
    from models.embedded import EmbeddedConfig, build_model
    from models.evaluate import primitive_errors

    model = build_model(EmbeddedConfig(hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64))
    errors = primitive_errors(model, vocabulary(), tasks=60)
    assert set(errors) == set(FAMILIES)  # primitives only: no held-out family is ever drawn
    assert all(rate == 1.0 for rate, n in errors.values() if n)  # an untrained model misses all
    # each chain counts once for every primitive in it: at least 60 counts, more with compositions
    assert sum(n for _, n in errors.values()) > 60
    assert primitive_errors(model, vocabulary(), tasks=60) == errors  # fixed tasks


def test_weights_follow_errors_relative_to_the_mean_clipped():
    from models.evaluate import weights_from_errors

    errors = {"a": (0.1, 50), "b": (0.2, 50), "c": (0.3, 50), "d": (0.9, 50), "e": (0.0, 0)}
    # mean of the measured (n > 0) errors is 0.375
    assert weights_from_errors(errors) == {"a": 0.5, "b": 0.533, "c": 0.8, "d": 2.0, "e": 0.5}
    assert weights_from_errors({"a": (0.0, 10), "b": (0.0, 10)}) == {"a": 1.0, "b": 1.0}
