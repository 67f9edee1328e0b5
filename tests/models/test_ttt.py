"""Test-time training on a real (tiny) model: data, training, voting, the base left untouched."""

from __future__ import annotations

import hashlib
import random

import pytest

from models.base import CapabilityError
from models.ttt import (
    TTTConfig,
    _batch,
    leave_one_out,
    run_ttt,
    training_pairs,
    training_sequences,
)
from models.ttt.data import fold_corrections
from prompts.compact import correction_note, encode_pair, encode_value
from tasks.augment import Identity
from tasks.generators import sample_task
from tasks.schema import Example, Task

pytestmark = pytest.mark.usefixtures("no_cached_adapters")


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


def test_every_output_after_the_first_carries_the_loss(tiny):
    task = sample_task(random.Random(0), "shift", n_train=4)
    seqs = training_sequences(tiny, task, TTTConfig(loss_on="all"), random.Random(0), views=[Identity()])
    assert len(seqs) == 4  # one leave-one-out episode per demonstration
    outputs = {encode_value(e.output, "grid") + "\n": e for e in task.train}
    lasts = []
    for seq in seqs:
        text = "".join(t for t, _ in seq)
        trained = [t for t, labelled in seq if labelled]
        # The whole episode: four demonstrations, the last written as query + output.
        order = [outputs[t] for t in trained]
        first = next(e for e in task.train if e not in order)
        assert text == "".join(encode_pair(e.input, e.output, "grid") for e in [first, *order])
        assert len(trained) == 3  # outputs 2, 3 and 4; never the first output, never an input
        lasts.append(order[-1])
    assert sorted(map(str, lasts)) == sorted(map(str, task.train))  # each demonstration last once


def test_correction_notes_are_folded_into_demonstrations_before_training(tiny):
    # reflection's corrections repeat demonstrations: in the prompt they gave the held-out answer
    # away and broke prefix-consistency (only the last output trained); an expert's correction of
    # another input is new data; any other note stays in the prompt
    task = sample_task(random.Random(0), "shift", n_train=4)
    extra = sample_task(random.Random(9), "shift", n_train=1).train[0]
    demo = task.train[1]
    notes = [
        correction_note(demo.input, demo.output, wrong=demo.input),
        correction_note(extra.input, extra.output),
        "Keep the colours.",
    ]
    noted = task.model_copy(update={"notes": notes})
    folded = fold_corrections(noted)
    assert folded.notes == ["Keep the colours."]
    assert folded.train == [*task.train, extra]
    assert fold_corrections(task) is task  # nothing to fold: the same task
    # with the corrections in the prompt only the last output would carry the loss; folded, every
    # output after the first does again (one leave-one-out episode per demonstration, five now)
    seqs = training_sequences(tiny, folded, TTTConfig(loss_on="all"), random.Random(0), views=[Identity()])
    assert len(seqs) == 5 and all(sum(labelled for _, labelled in seq) == 4 for seq in seqs)
    unfolded = training_sequences(tiny, noted, TTTConfig(loss_on="all"), random.Random(0), views=[Identity()])
    assert all(sum(labelled for _, labelled in seq) == 1 for seq in unfolded)


def test_last_output_only_is_still_available(tiny):
    task = sample_task(random.Random(0), "shift", n_train=4)
    seqs = training_sequences(tiny, task, TTTConfig(loss_on="last"), random.Random(0), views=[Identity()])
    assert all([labelled for _, labelled in seq] == [False, True] for seq in seqs)


def test_labels_cover_exactly_the_trained_output_tokens(tiny):
    task = sample_task(random.Random(3), "mirror", n_train=3)
    [seq] = training_sequences(tiny, task, TTTConfig(loss_on="all"), random.Random(0), views=[Identity()])[:1]
    batch = _batch(tiny.tokenizer, [seq], pad_id=0)
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    labelled = tiny.tokenizer.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
    assert labelled == "".join(t for t, trained in seq if trained)


def test_a_held_back_demonstration_is_never_a_target(tiny):
    task = sample_task(random.Random(0), "shift", n_train=4)
    held = task.train[1]
    held_out = encode_value(held.output, "grid") + "\n"
    seqs = training_sequences(tiny, task, TTTConfig(loss_on="all"), random.Random(0), held_back=1)
    assert seqs and all(not (labelled and t == held_out) for seq in seqs for t, labelled in seq)
    assert any(held_out in "".join(t for t, _ in seq) for seq in seqs)  # still seen as context


def test_training_pairs_are_capped_and_end_with_the_held_out_output(tiny):
    task = sample_task(random.Random(0), "shift", n_train=3)
    pairs = training_pairs(tiny, task, TTTConfig(train_views=4, max_sequences=10), random.Random(0))
    assert len(pairs) == 10  # 3 episodes x 4 views = 12, capped
    assert all(p.endswith("O") and t.endswith("\n") for p, t in pairs)


def test_ttt_lowers_the_loss_votes_and_leaves_the_base_untouched(tiny):
    before = state_hash(tiny.model)
    grads_before = [p.requires_grad for p in tiny.model.parameters()]
    task = sample_task(random.Random(2), "recolour_all", n_train=3)
    steps: list[tuple[int, int, float]] = []
    result = run_ttt(
        tiny,
        task,
        task.test[0].input,
        TTTConfig(steps=30, batch_size=4, lr=1e-2, train_views=3, predict_views=3),
        on_step=lambda *s: steps.append(s),
    )
    assert [s[0] for s in steps] == list(range(1, 31)) and all(s[1] == 30 for s in steps)
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5  # it learned something
    assert result.sequences == 9 and result.seconds > 0 and result.steps_run == 30
    assert result.views == 3 and result.answers and all(0 < share <= 1 for _, share in result.answers)
    assert state_hash(tiny.model) == before  # the adapter is gone, the base bit-identical
    assert [p.requires_grad for p in tiny.model.parameters()] == grads_before


def test_without_augmentation_one_greedy_prediction_from_identity_views(tiny, monkeypatch):
    calls = []
    generate = tiny.generate
    monkeypatch.setattr(tiny, "generate", lambda *a, **k: calls.append(a) or generate(*a, **k))
    task = sample_task(random.Random(2), "recolour_all", n_train=3)
    cfg = TTTConfig(steps=2, batch_size=2, augment=False, predict_views=4, train_views=10)
    result = run_ttt(tiny, task, task.test[0].input, cfg)
    assert len(calls) == 1 and result.views == 1 and len(result.answers) <= 1
    assert result.sequences == 3  # 3 episodes x the identity view only
    if result.answers:
        assert 0 < result.answers[0][1] <= 1  # the answer's probability, not a trivial vote share


def test_the_prior_outvotes_the_adapter_only_where_its_views_disagree():
    from models.ttt.predict import rank

    families = ["identity", "mirror", "colours"]
    agreed = [(f, "A") for f in families]
    split = [("identity", "A"), ("mirror", "C"), ("colours", "D")]
    prior = [(f, "B") for f in families]
    assert rank(agreed, prior=prior) == [("A", 0.5), ("B", 0.5)]  # a tie goes to the adapter
    assert rank(split, prior=prior)[0] == ("B", 0.5)
    assert rank(split, prior=[("identity", "C"), ("mirror", "B"), ("colours", None)])[0] == ("C", 0.4)
    assert rank(split) == [("A", 0.3333), ("C", 0.3333)]  # no prior: the adapter's vote alone
    assert rank([("identity", "A")], logprob=-0.5) == [("A", 0.6065)]  # one view: a probability
    assert rank([("identity", "A")], logprob=-0.5, prior=[("identity", "A")]) == [("A", 1.0)]


def test_prior_votes_come_from_the_base_model_and_leave_training_alone(tiny, monkeypatch):
    calls: list[bool] = []  # per generation: was an adapter attached?
    generate = tiny.generate

    def spy(*a, **k):
        calls.append(tiny._adapter_active)
        return generate(*a, **k)

    monkeypatch.setattr(tiny, "generate", spy)
    task = sample_task(random.Random(2), "recolour_all", n_train=3)
    cfg = TTTConfig(steps=3, batch_size=2, train_views=3, predict_views=3)
    plain = run_ttt(tiny, task, task.test[0].input, cfg)
    assert calls == [True] * 3
    calls.clear()
    cfg.prior_votes = True
    voted = run_ttt(tiny, task, task.test[0].input, cfg)
    # Three greedy predictions without the adapter (before it is attached), three with it.
    assert calls == [False] * 3 + [True] * 3
    assert voted.views == 6 and voted.losses == plain.losses  # the same adapter, trained alike
    assert voted.usage.requests == 2 * plain.usage.requests
    assert "prior_votes" not in cfg.training_settings()  # a cached adapter serves either vote
    calls.clear()
    cfg.augment = False  # the arm without augmentation and voting: one prediction, no vote
    alone = run_ttt(tiny, task, task.test[0].input, cfg)
    assert calls[-1:] == [True] and False not in calls and alone.views == 1
    calls.clear()
    cfg.augment = True  # a list has one view: the prior's one answer would only halve the share
    listed = Task(
        id="as-list", kind="list", function=task.function,
        train=[Example(input=e.input[0], output=e.output[0]) for e in task.train],
    )  # fmt: skip
    one = run_ttt(tiny, listed, task.test[0].input[0], cfg)
    assert calls == [True] and one.views == 1  # one greedy prediction, with the adapter


def test_on_a_table_label_probabilities_are_averaged_and_the_prior_mixed_in():
    from pathlib import Path

    from models.base import answer_key
    from models.factory import load_model
    from models.ttt import PRIOR_SHARE
    from models.ttt.data import draw_views
    from models.ttt.predict import label_distribution
    from tasks.tabular import TaskSplit, load_table_task

    model = load_model("embedded").for_kind("tabular")  # the shipped table model: it scores
    fruit = Path(__file__).resolve().parents[1] / "data" / "tables" / "fruit.csv"
    table = Task.model_validate(load_table_task(fruit, TaskSplit(k_shot=8, seed=0, queries=1)))
    query = table.test[0].input
    base = state_hash(model._model)
    cfg = TTTConfig(steps=2, batch_size=2, train_views=2, predict_views=3)
    alone = run_ttt(model, table, query, cfg)
    classes = sorted({answer_key(e.output) for e in table.train})
    assert alone.averaged and not alone.prior and alone.views == 3 and alone.usage.requests == 3
    assert sorted(answer_key(a) for a, _ in alone.answers) == classes  # every class, a probability each
    assert sum(p for _, p in alone.answers) == pytest.approx(1.0, abs=1e-3)
    cfg.prior_votes = True
    mixed = run_ttt(model, table, query, cfg)
    assert mixed.averaged and mixed.prior and mixed.views == 6 and mixed.losses == alone.losses
    assert mixed.usage.requests == 6
    # The prior's part is the base model's distribution under the same predict views (drawn after
    # the training views from the run's seed), untouched by the adapter.
    rng = random.Random(cfg.seed)
    draw_views(rng, table, cfg, cfg.train_views)
    prior = label_distribution(model, table, query, draw_views(rng, table, cfg, cfg.predict_views), [])
    own = {answer_key(a): p for a, p in alone.answers}
    for answer, p in mixed.answers:
        key = answer_key(answer)
        assert p == pytest.approx(PRIOR_SHARE * prior.probs[key] + (1 - PRIOR_SHARE) * own[key], abs=2e-4)
    assert state_hash(model._model) == base


def test_early_stopping_stops_before_the_budget_when_the_held_back_loss_is_flat(tiny):
    # A learning rate this small cannot move the held-back loss: no evaluation improves on step 0,
    # so training must stop after min_steps (10), long before the budget of 40.
    task = sample_task(random.Random(2), "recolour_all", n_train=3)
    steps: list[int] = []
    cfg = TTTConfig(steps=40, batch_size=2, lr=1e-12, early_stop=True, eval_every=5, patience=2)
    result = run_ttt(tiny, task, task.test[0].input, cfg, on_step=lambda s, *_: steps.append(s))
    assert result.stopped_early and result.steps_run == 10 and steps == list(range(1, 11))
    assert result.best_step == 0 and [s for s, _ in result.held_back_losses] == [0, 5, 10]
    assert result.sequences == 2 * cfg.train_views  # the held-back demonstration is no target


def test_early_stopping_needs_three_demonstrations(tiny):
    task = sample_task(random.Random(2), "recolour_all", n_train=2)
    cfg = TTTConfig(steps=12, batch_size=2, lr=1e-12, early_stop=True)
    result = run_ttt(tiny, task, task.test[0].input, cfg)
    assert result.steps_run == 12 and not result.stopped_early and result.held_back_losses == []


def test_ttt_refuses_what_it_cannot_do(tiny):
    one_demo = sample_task(random.Random(0), "mirror", n_train=1)
    with pytest.raises(CapabilityError, match="at least 2"):
        run_ttt(tiny, one_demo, one_demo.test[0].input, TTTConfig(steps=1))


def test_leave_two_out_episodes_add_shorter_contexts_in_fresh_orders():
    import random as _random

    from models.ttt import _episodes

    loo = _episodes(4, _random.Random(0))
    both = _episodes(4, _random.Random(0), kind="loo+l2o")
    assert both[: len(loo)] == loo
    extra = both[len(loo) :]
    assert len(extra) == 4 * 3  # each target, each other demonstration dropped once
    for context, target in both:
        assert target not in context and context
    assert {len(c) for c, _ in extra} == {2}
    assert all(t != 1 for _, t in _episodes(4, _random.Random(0), skip_target=1, kind="loo+l2o"))
    assert _episodes(2, _random.Random(0), kind="loo+l2o") == _episodes(2, _random.Random(0))


def test_recipes_override_only_what_they_name():
    from models.ttt import RECIPES, TTTConfig, with_recipe

    base = TTTConfig(early_stop=True, steps=33)
    trial = with_recipe(base, "trial")
    got = (trial.loss_on, trial.early_stop, trial.episodes, trial.max_sequences)
    assert got == ("all", False, "loo+l2o", 60)
    assert trial.steps == 33
    assert with_recipe(base, "plain") == base
    adaptive = with_recipe(TTTConfig(early_stop=False), "adaptive")
    assert (adaptive.loss_on, adaptive.early_stop, adaptive.episodes) == ("all", True, "loo+l2o")
    assert set(RECIPES) >= {"plain", "trial", "adaptive"}
    with pytest.raises(ValueError, match="unknown TTT recipe"):
        with_recipe(base, "nope")
