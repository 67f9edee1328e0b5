"""The table model: it reads the product's compact text, predicts each label from earlier rows only,
and works through the ordinary backend (generate, score, LoRA adapters, TTT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.base import PromptParts
from models.embedded import EMBEDDED_TABULAR_DIR
from models.growth import grown_block_order
from models.hf_backend import HFBackend
from models.table_model import (
    NEWLINE_LOGIT,
    TableModel,
    build_table_model,
    dense_row_sums,
    grow_layers,
)
from models.tokenizer import build_tokenizer, vocabulary
from models.ttt import TTTConfig, run_ttt
from prompts.compact import CompactRenderer
from tasks.schema import Task
from tasks.tabular import TaskSplit, load_table_task

FRUIT = Path(__file__).resolve().parents[1] / "data" / "tables" / "fruit.csv"
RENT = FRUIT.with_name("rent.csv")


def _ids(text: str) -> torch.Tensor:
    return torch.tensor([build_tokenizer()(text)["input_ids"]])


@pytest.fixture(scope="module")
def model() -> TableModel:
    return build_table_model(hidden=32, layers=2, heads=2, seed=3).eval()


def test_rows_are_found_in_the_compact_text(model: TableModel) -> None:
    text = "I27a_OB\nI90b3OA\nI45c1O"
    rows = model.find_rows(_ids(text))
    assert rows.valid.tolist() == [[True, True, True]]
    # cells: digits 1-10, categories from 11, missing = CELL_CLASSES - 3
    assert rows.cells[0, 0].tolist()[:2] == [3, 8] and rows.cells[0, 0, 2].item() == 11
    vocab = vocabulary()
    assert rows.labels[0].tolist() == [vocab["B"], vocab["A"], 0]  # the query has no label yet
    # positions count the <bos> the tokenizer puts first: "O" of row 0 is character 5, so id 6
    assert rows.out_pos[0].tolist() == [6, 14, 22]
    assert rows.label_pos[0].tolist() == [7, 15, -1]


def test_each_label_is_predicted_from_earlier_rows_only(model: TableModel) -> None:
    text = "I27aOB\nI90bOA\nI45cOB\nI46cOA\n"
    ids = _ids(text)
    base = model(ids).logits
    rows = model.find_rows(ids)
    changed = ids.clone()
    changed[0, int(rows.label_pos[0, 2])] = vocabulary()["C"]  # row 2's label
    after = model(changed).logits
    for r in range(3):  # rows 0-2 are predicted without row 2's label
        pos = int(rows.out_pos[0, r])
        assert torch.equal(base[0, pos], after[0, pos])
    pos = int(rows.out_pos[0, 3])
    assert not torch.allclose(base[0, pos], after[0, pos])  # row 3 reads it


def test_the_fast_row_sums_are_the_direct_sum_over_every_cell() -> None:
    from models.train_table import TableTrainConfig, batch_at

    model = build_table_model(hidden=32, layers=1, heads=1, seed=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    # real training episodes: digits, categories, missing cells, rows of different widths, padding
    batch = batch_at(7, TableTrainConfig(batch_size=6), vocabulary())
    rows = model.find_rows(batch["input_ids"], batch["attention_mask"])
    assert (rows.cells == 0).any() and (rows.cells > 10).any()
    assert torch.allclose(model.row_sums(rows), dense_row_sums(model, rows), atol=1e-4)


def test_new_blocks_are_spread_after_old_ones() -> None:
    assert grown_block_order(6, 3) == [0, 1, -2, 2, 3, -4, 4, 5, -6]
    assert grown_block_order(2, 0) == [0, 1]
    assert grown_block_order(1, 2) == [0, -1, -1]  # more new blocks than old: several after one
    with pytest.raises(ValueError, match="grow"):
        grown_block_order(2, -1)


def test_a_grown_model_computes_the_same_function_and_then_learns_with_its_new_blocks() -> None:
    base = build_table_model(hidden=32, layers=2, heads=2, seed=5)
    with torch.no_grad():  # a trained-looking model: no zero weights anywhere
        for p in base.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    base.eval()
    grown = grow_layers(base, 3).eval()
    assert grown.config.num_layers == 5 and len(grown.blocks) == 5 and base.config.num_layers == 2
    ids = _ids("I27aOB\nI90bOA\nI45cOB\nI46cOA\nI33bO")
    assert torch.allclose(base(ids).logits, grown(ids).logits, atol=1e-5)
    # the new blocks (order [0, new, 1, new, new]) are copies with zeroed outputs, not random ones
    assert grown_block_order(2, 3) == [0, -1, 1, -2, -2]
    assert torch.equal(grown.blocks[1].qkv.weight, base.blocks[0].qkv.weight)
    assert torch.equal(grown.blocks[2].proj.weight, base.blocks[1].proj.weight)
    assert not grown.blocks[1].proj.weight.any() and not grown.blocks[4].down.weight.any()
    grown.train()
    labels = ids.clone()
    grown(ids, labels=labels).loss.backward()
    assert grown.blocks[1].proj.weight.grad.abs().sum() > 0  # a zeroed output still gets a gradient


def test_the_newline_after_a_label_is_certain_and_the_loss_covers_labels(model: TableModel) -> None:
    vocab = vocabulary()
    ids = _ids("I27aOB\nI90bOA\n")
    out = model(ids)
    rows = model.find_rows(ids)
    label_pos = int(rows.label_pos[0, 0])
    assert out.logits[0, label_pos].argmax().item() == vocab["\n"]
    assert out.logits[0, label_pos].max().item() == NEWLINE_LOGIT
    labels = torch.full_like(ids, -100)
    for r in range(2):
        labels[0, int(rows.label_pos[0, r])] = ids[0, int(rows.label_pos[0, r])]
    loss = model(ids, labels=labels).loss
    logp = out.logits.log_softmax(-1)
    expected = (
        -(logp[0, int(rows.out_pos[0, 0]), vocab["B"]] + logp[0, int(rows.out_pos[0, 1]), vocab["A"]]) / 2
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_short_training_run_learns_a_table_rule() -> None:
    """Rows whose first cell is low are A, high are B: a few steps of AdamW must learn it."""
    torch.manual_seed(0)
    model = build_table_model(hidden=32, layers=2, heads=2, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tok = build_tokenizer()

    def episode() -> tuple[torch.Tensor, torch.Tensor]:
        text, mask = "", []
        for _ in range(8):
            d = int(torch.randint(0, 10, ()).item())
            noise = int(torch.randint(0, 10, ()).item())
            line, label = f"I{d}{noise}O", "A" if d < 5 else "B"
            text += line + label + "\n"
            mask += [0] * len(line) + [1, 1]
        ids = torch.tensor(tok(text)["input_ids"])
        labels = torch.where(torch.tensor([0, *mask]) == 1, ids, torch.tensor(-100))
        return ids, labels

    for _ in range(150):
        batch = [episode() for _ in range(16)]
        ids, labels = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
        loss = model(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    right = 0
    for d in range(10):
        logits = model(_ids(f"I{d}3O")).logits[0, -1]
        right += int(logits.argmax().item() == vocabulary()["A" if d < 5 else "B"])
    assert right >= 9


def test_backend_generates_scores_and_decodes_a_label(tiny_table_checkpoint: Path) -> None:
    backend = HFBackend(tiny_table_checkpoint, name="table")
    task = Task.model_validate(load_table_task(FRUIT, TaskSplit(k_shot=8, seed=0, queries=2)))
    parts = PromptParts(kind="tabular", function=task.function, demos=task.train, query=task.test[0].input)
    renderer = CompactRenderer()
    prompt = renderer.render(parts)
    gen = backend.generate(prompt, n=3, temperature=1.0, seed=1)
    labels = {str(e.output) for e in task.train}
    for sample in gen.samples:
        answer = renderer.parse(sample.text, "tabular", parts)
        assert answer is None or str(answer) in labels
    greedy = backend.generate(prompt).samples[0]
    assert len(greedy.text) == 1  # one symbol, then the newline stop
    (score,) = backend.score(prompt, [greedy.text + "\n"])
    assert score == pytest.approx(greedy.logprob, abs=1e-4)


def test_ttt_trains_a_lora_adapter_on_the_table_model(
    tiny_table_checkpoint: Path, no_cached_adapters: None
) -> None:
    backend = HFBackend(tiny_table_checkpoint, name="table")
    before = {k: v.clone() for k, v in backend.model.state_dict().items()}
    task = Task.model_validate(load_table_task(FRUIT, TaskSplit(k_shot=8, seed=0, queries=1)))
    result = run_ttt(backend, task, task.test[0].input, TTTConfig(steps=4, predict_views=2, cache=0))
    assert result.steps_run >= 1 and result.answers
    after = backend.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.skipif(not (EMBEDDED_TABULAR_DIR / "config.json").exists(), reason="no shipped table model")
def test_the_shipped_table_model_reads_a_table_it_never_saw() -> None:
    """`embedded` answers a table through its table model, well above the majority class."""
    from collections import Counter

    from models.factory import clear_model_cache, load_model

    clear_model_cache()
    model = load_model("embedded").for_kind("tabular")
    assert type(model.model).__name__ == "TableModel" and model.name == "embedded[tabular]"
    renderer = model.renderer
    right = total = majority = 0
    for seed in range(3):
        task = Task.model_validate(load_table_task(FRUIT, TaskSplit(k_shot=16, seed=seed, queries=20)))
        common = Counter(str(e.output) for e in task.train).most_common(1)[0][0]
        for q in task.test:
            parts = PromptParts(kind="tabular", function=task.function, demos=task.train, query=q.input)
            answer = renderer.parse(model.generate(renderer.render(parts)).samples[0].text, "tabular", parts)
            right += int(answer == q.target)
            majority += int(str(q.target) == common)
            total += 1
    assert right / total >= 0.8 > majority / total


@pytest.mark.parametrize("which", ["tiny_table_checkpoint", "tiny_checkpoint"])
def test_greedy_decoding_of_an_ordered_answer_is_the_median_of_the_distribution(
    which: str, request: pytest.FixtureRequest
) -> None:
    """With ``ordinal`` symbols, the greedy answer is the first symbol (in their order) whose
    cumulative probability reaches one half, not the most probable one; its log-probability is
    still the model's own. Both generate paths: the table model's and transformers' (text model)."""

    backend = HFBackend(request.getfixturevalue(which), name="m")
    task = Task.model_validate(load_table_task(RENT, TaskSplit(k_shot=8, seed=0, queries=1)))
    parts = PromptParts(kind="tabular", function=task.function, demos=task.train, query=task.test[0].input)
    plain = CompactRenderer().render(parts)
    assert plain.ordinal == [str(d) for d in range(10)]  # a regression label: its deciles, in order
    digits = plain.ordinal
    scores = dict(zip(digits, backend.score(plain, [d + "\n" for d in digits]), strict=True))
    mode = max(digits, key=scores.__getitem__)
    # put the mode first: the median then differs from it unless it holds half the mass alone
    order = [mode] + [d for d in digits if d != mode]
    probs = torch.tensor([scores[d] for d in order]).softmax(0)
    assert probs[0] < 0.5, "the tiny model is too sure for this test"
    median = order[int((probs.cumsum(0) < 0.5).sum())]
    assert median != mode
    sample = backend.generate(plain.model_copy(update={"ordinal": order})).samples[0]
    assert sample.text[:1] == median
    (own,) = backend.score(plain, [median])  # the model's own log-probability of the symbol
    assert sample.token_logprobs[0] == pytest.approx(own, abs=1e-4)
