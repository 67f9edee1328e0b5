"""Teacher-forced exact match is greedy generation's exact match, query by query."""

from __future__ import annotations

import pytest

from models.embedded import EMBEDDED_DIR
from models.evaluate import episodes_of, evaluation_sets, forward_episodes
from models.tokenizer import vocabulary
from tasks.generators import HELD_OUT


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
