"""The table model's training script: exact resumption, the ledger, a checkpoint the product loads."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models.factory import clear_model_cache, load_model
from models.tokenizer import vocabulary
from models.train_table import batch_at, episode_ids, main, smoke_config, train_leg
from prompts.tabular import serialize_episode
from tasks.tabular_prior import sample_task
from tests.models.legs import assert_legs_bit_identical, assert_warm_start_without_state


def _leg(out: Path, *, steps: int = 0, resume: bool = False) -> dict:
    return train_leg(out, smoke_config(), resume=resume, minutes=5, steps=steps, eval_dir=None)


def test_batches_are_a_pure_function_of_the_step() -> None:
    cfg, vocab = smoke_config(), vocabulary()
    a, b = batch_at(3, cfg, vocab), batch_at(3, cfg, vocab)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(batch_at(4, cfg, vocab)["input_ids"][:, :8], a["input_ids"][:, :8])


def test_three_legs_are_bit_identical_to_one(tmp_path: Path) -> None:
    ledger = assert_legs_bit_identical(_leg, tmp_path)
    assert all({"tokens", "cpu_hours", "gpu_hours", "steps", "synthetic_acc"} <= set(e) for e in ledger)
    # The label's likelihood: a mean over the eval tables of a positive loss (never 0 or NaN).
    assert all(0 < e["synthetic_nll"] < 20 and e["synthetic_tables"] == 8 for e in ledger)


def test_bf16_legs_resume_bit_identically_and_say_so(tmp_path: Path) -> None:
    def leg(out: Path, *, steps: int = 0, resume: bool = False) -> dict:
        cfg = smoke_config()
        cfg.bf16 = True
        return train_leg(out, cfg, resume=resume, minutes=5, steps=steps, eval_dir=None)

    ledger = assert_legs_bit_identical(leg, tmp_path)
    assert all(e["bf16"] for e in ledger) and all(0 < e["loss"] < 20 for e in ledger)
    _leg(tmp_path / "fp32")  # the same six steps in fp32: the flag changes the arithmetic
    a = torch.load(tmp_path / "one" / "train_state.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "fp32" / "train_state.pt", weights_only=False)["model"]
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert "bf16" not in json.loads((tmp_path / "fp32" / "mockingbird.json").read_text())["ledger"][0]


def test_without_the_state_file_resume_warm_starts_and_says_so(tmp_path: Path) -> None:
    assert_warm_start_without_state(_leg, tmp_path)


def test_the_checkpoint_answers_a_table_through_the_product(tmp_path: Path) -> None:
    assert main(["--smoke", "--out", str(tmp_path / "ckpt")]) == 0
    marker = json.loads((tmp_path / "ckpt" / "mockingbird.json").read_text())
    assert marker["kind"] == "tabular" and marker["format"] == "compact"
    clear_model_cache()
    backend = load_model(f"hf:{tmp_path / 'ckpt'}")
    assert type(backend.model).__name__ == "TableModel"
    # shipped in fp16 (half the bytes in git), run in fp32
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}  # noqa: SIM118
    assert {str(p.dtype) for p in backend.model.parameters()} == {"torch.float32"}
    gen = backend.generate(backend.renderer.render(_fruit_parts()))
    assert len(gen.samples[0].text) == 1


def _fruit_parts():
    from models.base import PromptParts
    from tasks.schema import Task
    from tasks.tabular import TaskSplit, load_table_task

    fruit = Path(__file__).resolve().parents[1] / "data" / "tables" / "fruit.csv"
    task = Task.model_validate(load_table_task(fruit, TaskSplit(k_shot=8, seed=0, queries=1)))
    return PromptParts(kind="tabular", function=task.function, demos=task.train, query=task.test[0].input)


def test_episode_ids_match_the_vocabulary():
    vocab = vocabulary()
    text, mask = serialize_episode(sample_task(2, 0))
    ids, loss = episode_ids(text, mask, vocab)
    assert ids[0] == vocab["<bos>"] and len(ids) == len(loss) == len(text) + 1
    assert vocab["<unk>"] not in ids


def test_a_new_run_takes_its_shape_and_a_resumed_one_keeps_it(tmp_path: Path, capsys) -> None:
    import pytest

    out = tmp_path / "ckpt"
    assert main(["--smoke", "--out", str(out), "--hidden", "64", "--layers", "2"]) == 0
    saved = json.loads((out / "mockingbird.json").read_text())
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 64
    assert saved["train"]["layers"] == 2 and saved["train"]["heads"] == 2  # head width 32
    with pytest.raises(SystemExit) as stop:
        main(["--resume", str(out), "--hidden", "128"])
    assert stop.value.code == 2 and "a resumed run keeps its own" in capsys.readouterr().err


def test_extending_a_decayed_run_re_warms_the_learning_rate(tmp_path: Path) -> None:
    import pytest

    from models.train_table import lr_at

    out = tmp_path / "ckpt"
    assert main(["--smoke", "--out", str(out)]) == 0  # 6 steps, decayed at the end
    done = smoke_config()
    assert lr_at(6, done) == pytest.approx(0.1 * done.lr)  # where the old schedule had left it
    assert main(["--resume", str(out), "--total-steps", "60"]) == 0
    saved = json.loads((out / "mockingbird.json").read_text())["train"]
    assert saved["rewarm_at"] == 6 and saved["total_steps"] == 60
    longer = smoke_config()
    longer.total_steps, longer.rewarm_at = 60, 6
    # from a tenth of the peak, up again over warmup_steps, then the constant phase
    assert lr_at(6, longer) == longer.lr / longer.warmup_steps
    assert lr_at(6 + longer.warmup_steps, longer) == longer.lr
    # resuming without a change of schedule keeps the rates as they were (no second re-warm)
    assert main(["--resume", str(out), "--total-steps", "60"]) == 0
    assert json.loads((out / "mockingbird.json").read_text())["train"]["rewarm_at"] == 6


def test_a_resumed_run_grows_new_blocks_and_the_ledger_says_so(tmp_path: Path, capsys) -> None:
    import pytest

    out = tmp_path / "ckpt"
    assert main(["--smoke", "--out", str(out)]) == 0  # one block, 6 steps
    before = torch.load(out / "train_state.pt", weights_only=False)
    assert main(["--resume", str(out), "--total-steps", "8", "--grow-layers", "2"]) == 0
    marker = json.loads((out / "mockingbird.json").read_text())
    assert json.loads((out / "config.json").read_text())["num_layers"] == 3
    assert marker["train"]["layers"] == 3 and marker["train"]["rewarm_at"] == 6
    assert marker["ledger"][-1]["grown"] == {"from_layers": 1, "to_layers": 3, "at_step": 6}
    assert "grown" not in marker["ledger"][0]
    after = torch.load(out / "train_state.pt", weights_only=False)
    assert after["step"] == 8 and len(after["opt"]["state"]) == len(list(after["model"]))
    # the old block kept its optimiser moments (two more steps moved them, from where they were)
    assert after["opt"]["state"][0]["step"] == before["opt"]["state"][0]["step"] + 2
    clear_model_cache()
    assert type(load_model(f"hf:{out}").model).__name__ == "TableModel"
    # a grown run resumes as it is, with its new shape
    assert main(["--resume", str(out), "--total-steps", "9"]) == 0
    assert json.loads((out / "config.json").read_text())["num_layers"] == 3
    with pytest.raises(SystemExit) as stop:
        main(["--smoke", "--out", str(tmp_path / "new"), "--grow-layers", "1"])
    assert stop.value.code == 2 and "grows a trained run" in capsys.readouterr().err


def test_mechanism_weights_are_kept_by_the_run_and_the_ledger_says_so(tmp_path: Path, capsys) -> None:
    import pytest

    cfg, vocab = smoke_config(), vocabulary()
    cfg.mechanism_weights = {"linear": 5.0}
    weighted, uniform = batch_at(3, cfg, vocab), batch_at(3, smoke_config(), vocab)
    assert not torch.equal(weighted["input_ids"], uniform["input_ids"])
    out = tmp_path / "ckpt"
    assert main(["--smoke", "--out", str(out), "--steps", "3", "--mechanism-weights", "linear=5"]) == 0
    assert main(["--resume", str(out)]) == 0  # the next leg keeps the run's weights
    marker = json.loads((out / "mockingbird.json").read_text())
    assert marker["train"]["mechanism_weights"] == {"linear": 5.0}
    assert [e["mechanism_weights"] for e in marker["ledger"]] == [{"linear": 5.0}] * 2
    assert main(["--resume", str(out), "--total-steps", "8", "--mechanism-weights", "uniform"]) == 0
    marker = json.loads((out / "mockingbird.json").read_text())
    assert marker["train"]["mechanism_weights"] == {} and "mechanism_weights" not in marker["ledger"][-1]
    for bad in ("forest=2", "linear=-1", "linear", ""):
        with pytest.raises(SystemExit) as stop:
            main(["--resume", str(out), "--mechanism-weights", bad])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "--mechanism-weights" in err and "Traceback" not in err


def test_a_bf16_leg_on_a_cpu_that_would_emulate_it_warns(tmp_path: Path, monkeypatch, caplog) -> None:
    import logging

    import models.train as train

    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    cfg = smoke_config()
    cfg.bf16 = True
    with caplog.at_level(logging.WARNING):
        train_leg(tmp_path / "run", cfg, resume=False, minutes=5, steps=2, eval_dir=None)
    assert "no native bfloat16" in caplog.text


def test_a_second_leg_on_a_run_in_use_is_refused_and_loses_nothing(tmp_path: Path, capsys) -> None:
    from tests.models.legs import assert_a_held_run_refuses_a_second_leg

    assert main(["--smoke", "--out", str(tmp_path / "run"), "--steps", "2"]) == 0
    assert_a_held_run_refuses_a_second_leg(main, tmp_path / "run", capsys)
