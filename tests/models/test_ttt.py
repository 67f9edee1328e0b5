"""Test-time training on a real (tiny) model: data, training, voting, the base left untouched."""

from __future__ import annotations

import hashlib
import random

import pytest

from models.base import CapabilityError
from models.factory import clear_model_cache, load_model
from models.ttt import TTTConfig, leave_one_out, run_ttt, training_pairs
from tasks.generators import sample_task


def state_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_leave_one_out_holds_each_demonstration_out_once():
    task = sample_task(random.Random(0), "mirror", n_train=4)
    episodes = leave_one_out(task, random.Random(1))
    assert [held for _, held in episodes] == task.train
    assert all(held not in context and len(context) == 3 for context, held in episodes)


def test_training_pairs_are_capped_and_end_with_the_held_out_output(tiny_checkpoint):
    clear_model_cache()
    model = load_model(f"hf:{tiny_checkpoint}")
    task = sample_task(random.Random(0), "shift", n_train=3)
    pairs = training_pairs(model, task, TTTConfig(train_views=4, max_sequences=10), random.Random(0))
    assert len(pairs) == 10  # 3 episodes x 4 views = 12, capped
    assert all(p.endswith("O") and t.endswith("\n") for p, t in pairs)


def test_ttt_lowers_the_loss_votes_and_leaves_the_base_untouched(tiny_checkpoint):
    clear_model_cache()
    model = load_model(f"hf:{tiny_checkpoint}")
    before = state_hash(model.model)
    grads_before = [p.requires_grad for p in model.model.parameters()]
    task = sample_task(random.Random(2), "recolour_all", n_train=3)
    steps: list[tuple[int, int, float]] = []
    result = run_ttt(
        model,
        task,
        task.test[0].input,
        TTTConfig(steps=30, batch_size=4, lr=1e-2, train_views=3, predict_views=3),
        on_step=lambda *s: steps.append(s),
    )
    assert [s[0] for s in steps] == list(range(1, 31)) and all(s[1] == 30 for s in steps)
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5  # it learned something
    assert result.sequences == 9 and result.seconds > 0
    assert all(0 < share <= 1 for _, share in result.answers)
    assert state_hash(model.model) == before  # the adapter is gone, the base bit-identical
    assert [p.requires_grad for p in model.model.parameters()] == grads_before


def test_ttt_refuses_what_it_cannot_do(tiny_checkpoint):
    clear_model_cache()
    model = load_model(f"hf:{tiny_checkpoint}")
    one_demo = sample_task(random.Random(0), "mirror", n_train=1)
    with pytest.raises(CapabilityError, match="at least 2"):
        run_ttt(model, one_demo, one_demo.test[0].input, TTTConfig(steps=1))
