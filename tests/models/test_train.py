"""The training script: exact resumption, warm starts, the ledger; held-out families never trained on."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from models.embedded import EmbeddedConfig
from models.tokenizer import vocabulary
from models.train import (
    MARKER,
    STATE_FILE,
    Run,
    TrainConfig,
    batch_at,
    draw_episode,
    lr_at,
    main,
    smoke_config,
    train_leg,
)
from tasks.generators import BANNED_PAIRS, FAMILIES, HELD_OUT
from tests.models.legs import assert_legs_bit_identical, assert_warm_start_without_state


def _leg(out: Path, *, steps: int = 0, resume: bool = False, cfg: TrainConfig | None = None) -> dict:
    return train_leg(cfg or smoke_config(), out, minutes=5, resume=resume, arc_dir=None, max_leg_steps=steps)


def test_two_legs_are_bit_identical_to_one(tmp_path):
    ledger = assert_legs_bit_identical(_leg, tmp_path)
    assert ledger[-1]["cpu_hours"] >= ledger[0]["cpu_hours"] > 0


def test_bf16_legs_on_the_cpu_resume_bit_identically_and_say_so(tmp_path):
    import torch

    def leg(out: Path, *, steps: int = 0, resume: bool = False) -> dict:
        return train_leg(
            smoke_config(), out, minutes=5, resume=resume, arc_dir=None, max_leg_steps=steps, bf16=True
        )

    ledger = assert_legs_bit_identical(leg, tmp_path)
    assert all(e["bf16"] for e in ledger)
    assert json.loads((tmp_path / "two" / MARKER).read_text())["training"]["config"]["bf16"] is True
    _leg(tmp_path / "fp32")  # the same steps in fp32: the switch changes the arithmetic
    a = torch.load(tmp_path / "one" / "train_state.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "fp32" / "train_state.pt", weights_only=False)["model"]
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert "bf16" not in json.loads((tmp_path / "fp32" / MARKER).read_text())["ledger"][0]
    # a resumed leg keeps the run's setting unless told (--no-bf16 turns it off)
    assert main(["--smoke", "--resume", str(tmp_path / "two"), "--total-steps", "7"]) == 0
    assert json.loads((tmp_path / "two" / MARKER).read_text())["ledger"][-1]["bf16"] is True
    assert main(["--smoke", "--resume", str(tmp_path / "two"), "--total-steps", "8", "--no-bf16"]) == 0
    assert "bf16" not in json.loads((tmp_path / "two" / MARKER).read_text())["ledger"][-1]


def test_resume_without_optimizer_state_warm_starts_and_says_so(tmp_path):
    assert assert_warm_start_without_state(_leg, tmp_path)["leg_steps"] == 1
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker["training"]["config"]["rewarm_at"] == 2  # the learning rate re-warms from there


def test_batches_are_a_function_of_the_step():
    cfg, vocab = smoke_config(), vocabulary()
    assert batch_at(3, cfg, vocab) == batch_at(3, cfg, vocab)
    assert batch_at(3, cfg, vocab) != batch_at(4, cfg, vocab)
    other = TrainConfig(model=cfg.model, batch_size=4, pool=2, seed=1)
    assert batch_at(3, other, vocab) != batch_at(3, cfg, vocab)


def test_the_runs_cached_pool_serves_batch_at_of_every_step(tmp_path):
    cfg = smoke_config()
    run = Run(cfg, tmp_path)
    for step in range(5):  # pool of 2: crosses pool boundaries twice
        run.step = step
        assert run.episodes() == batch_at(step, cfg, run.vocab)
    run.step = 1  # going back (a resumed run) redraws the right pool
    assert run.episodes() == batch_at(1, cfg, run.vocab)


def test_held_out_families_never_reach_training():
    cfg = TrainConfig(model=EmbeddedConfig(), compose_p=(1.0, 1.0), deep_p=0.5)
    rng = random.Random(0)
    seen_pairs = set()
    for i in range(3000):
        task = draw_episode(rng, cfg, step=10_000 + i)
        assert task.type not in HELD_OUT
        chain = tuple(task.type.split("+"))
        pairs = set(itertools.pairwise(chain))
        assert not pairs & BANNED_PAIRS, task.type
        seen_pairs |= pairs
    assert len(seen_pairs) > 200  # training does compose broadly


def test_without_compositions_every_grid_task_is_one_primitive():
    cfg = TrainConfig(model=EmbeddedConfig(), compose_p=(0.0, 0.0), list_p=0.0)
    rng = random.Random(1)
    types = {draw_episode(rng, cfg, step=10_000 + i).type for i in range(300)}
    assert all("+" not in t for t in types) and len(types) > 10


def test_schedule_warms_up_holds_and_decays():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, total_steps=100, decay_frac=0.2)
    assert lr_at(0, cfg) == 1e-4
    assert lr_at(50, cfg) == lr_at(80, cfg) == 1e-3
    assert lr_at(90, cfg) < 1e-3 and abs(lr_at(100, cfg) - 1e-4) < 1e-12


def test_a_warm_start_rewarms_the_learning_rate_then_follows_the_schedule():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, total_steps=100, decay_frac=0.2, rewarm_at=40)
    assert lr_at(39, cfg) == 1e-3  # before the warm start: the plain schedule
    assert lr_at(40, cfg) == 1e-4 and lr_at(44, cfg) == 5e-4
    plain = TrainConfig(**{**cfg.__dict__, "rewarm_at": 0})
    assert lr_at(50, cfg) == 1e-3 and lr_at(100, cfg) == lr_at(100, plain)


def test_an_unavailable_device_is_one_line_and_exit_2(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as stop:
        main(["--smoke", "--out", str(tmp_path / "run"), "--device", "tpu"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device tpu: not available") and "\n" not in err
    assert not (tmp_path / "run").exists()  # nothing started


def test_decay_steps_set_the_final_decay_of_a_resumed_run(tmp_path):
    # a leg that must ship a decayed model keeps a long constant phase: --decay-steps N decays
    # over the last N steps of --total-steps, and the run's config records the share
    assert main(["--smoke", "--out", str(tmp_path / "run"), "--steps", "2"]) == 0
    out = str(tmp_path / "run")
    leg = ["--smoke", "--resume", out, "--steps", "1", "--total-steps", "40", "--decay-steps", "10"]
    assert main(leg) == 0
    cfg = json.loads((tmp_path / "run" / MARKER).read_text())["training"]["config"]
    assert cfg["total_steps"] == 40 and cfg["decay_frac"] == 0.25
    schedule = TrainConfig(**{k: v for k, v in cfg.items() if k not in ("model",)})
    assert lr_at(29, schedule) == schedule.lr > lr_at(31, schedule)


def test_extending_a_decayed_run_rewarms_the_learning_rate(tmp_path):
    # the smoke plan is 6 steps: at step 6 the run has decayed to 10 % of lr; a jump straight
    # back to the peak would undo the decay's gain, so the extension re-warms from there
    out = str(tmp_path / "run")
    assert main(["--smoke", "--out", out, "--steps", "6"]) == 0
    assert main(["--smoke", "--resume", out, "--steps", "1", "--total-steps", "40"]) == 0
    cfg = json.loads((tmp_path / "run" / MARKER).read_text())["training"]["config"]
    assert cfg["rewarm_at"] == 6
    schedule = TrainConfig(**{k: v for k, v in cfg.items() if k not in ("model",)})
    assert lr_at(6, schedule) == schedule.lr / schedule.warmup_steps

    # a resume that keeps the plan (or extends a run still in its constant phase) does not
    out2 = str(tmp_path / "run2")
    assert main(["--smoke", "--out", out2, "--steps", "2"]) == 0
    assert main(["--smoke", "--resume", out2, "--steps", "1", "--total-steps", "40"]) == 0
    cfg2 = json.loads((tmp_path / "run2" / MARKER).read_text())["training"]["config"]
    assert cfg2["rewarm_at"] == 0


def test_a_leg_left_out_of_the_ledger_keeps_its_number():
    from models.legs import next_leg

    assert next_leg([]) == 1
    # leg 7 was run and not shipped (a later entry notes it): the next leg is 9, not a second 8
    assert next_leg([{"leg": n} for n in (1, 2, 3, 4, 5, 6, 8)]) == 9


def test_a_resumed_leg_takes_its_own_threads_and_save_interval(tmp_path, capsys):
    import pytest
    import torch

    request_threads = torch.get_num_threads()
    out = str(tmp_path / "run")
    assert main(["--smoke", "--out", out, "--steps", "2"]) == 0
    points = len(json.loads((tmp_path / "run" / MARKER).read_text())["curve"])
    # --save-minutes 0: a save and a measurement after every step of this leg (was ignored on resume)
    assert main(["--smoke", "--resume", out, "--steps", "2", "--save-minutes", "0", "--threads", "1"]) == 0
    marker = json.loads((tmp_path / "run" / MARKER).read_text())
    assert len(marker["curve"]) == points + 3  # two in the leg, one at its end
    assert marker["training"]["config"]["threads"] == 1
    torch.set_num_threads(request_threads)  # the leg set the process's threads; later tests keep theirs
    with pytest.raises(SystemExit) as stop:
        main(["--smoke", "--resume", out, "--hidden", "64"])
    assert stop.value.code == 2
    assert "a resumed run keeps its own" in capsys.readouterr().err


def test_a_leg_can_change_the_data_mix_and_the_ledger_says_so(tmp_path, capsys):
    import pytest
    import torch

    threads = torch.get_num_threads()
    out = str(tmp_path / "run")
    assert main(["--smoke", "--out", out, "--steps", "2"]) == 0
    assert main(["--smoke", "--resume", out, "--steps", "1", "--reweigh", "40", "--compose-p", "0.8"]) == 0
    torch.set_num_threads(threads)
    marker = json.loads((tmp_path / "run" / MARKER).read_text())
    mix = marker["ledger"][-1]["mix"]
    assert mix["from_step"] == 2 and mix["compose_p"] == 0.8 and mix["reweigh_tasks"] == 40
    assert set(mix["primitive_weights"]) == set(mix["held_in_errors"]) == set(FAMILIES)
    state = torch.load(tmp_path / "run" / STATE_FILE, weights_only=False)
    saved = state["config"]
    assert saved["primitive_weights"] == mix["primitive_weights"] and saved["compose_p"][1] == 0.8
    assert "mix" not in marker["ledger"][0]  # an unchanged leg records no mix
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["--smoke", "--resume", out, "--compose-p", "1.5"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --compose-p 1.5: a share, between 0 and 1"
    with pytest.raises(SystemExit) as stop:
        main(["--smoke", "--out", str(tmp_path / "new"), "--reweigh", "10"])
    assert stop.value.code == 2
    assert "use it with --resume" in capsys.readouterr().err


def test_weights_in_the_config_shape_the_batches():
    cfg, vocab = smoke_config(), vocabulary()
    weighted = TrainConfig(model=cfg.model, batch_size=4, pool=2, primitive_weights={"mirror": 2.0})
    assert batch_at(3, weighted, vocab) == batch_at(3, weighted, vocab)
    assert batch_at(3, weighted, vocab) != batch_at(3, cfg, vocab)


def test_a_grown_text_model_computes_the_same_function():
    import torch

    from models.embedded import build_model, grow_model

    tiny = EmbeddedConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=64)
    model = build_model(tiny, seed=1)
    with torch.no_grad():  # no zero weights anywhere, as in a trained model
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    grown = grow_model(model.eval(), 2).eval()
    assert grown.config.num_hidden_layers == 4 and model.config.num_hidden_layers == 2
    ids = torch.randint(5, 40, (2, 20))
    assert torch.allclose(model(ids).logits, grown(ids).logits, atol=1e-5)
    assert not grown.model.layers[1].self_attn.o_proj.weight.any()  # order [0, new, 1, new]
    assert torch.equal(
        grown.model.layers[1].self_attn.q_proj.weight, model.model.layers[0].self_attn.q_proj.weight
    )


def test_a_resumed_run_grows_new_layers_and_the_ledger_says_so(tmp_path, capsys):
    import pytest
    import torch

    out = tmp_path / "run"
    assert main(["--smoke", "--out", str(out)]) == 0  # 2 layers, 6 steps
    before = torch.load(out / "train_state.pt", weights_only=False)
    assert main(["--smoke", "--resume", str(out), "--total-steps", "8", "--grow-layers", "1"]) == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["training"]["config"]["model"]["num_layers"] == 3
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 3
    assert marker["ledger"][-1]["grown"] == {"from_layers": 2, "to_layers": 3, "at_step": 6}
    assert marker["training"]["config"]["rewarm_at"] == 6
    after = torch.load(out / "train_state.pt", weights_only=False)
    assert after["step"] == 8 and len(after["ema"]) == len(list(after["optimizer"]["state"]))
    # the embedding kept its moments (two more steps on from where they were)
    assert after["optimizer"]["state"][0]["step"] == before["optimizer"]["state"][0]["step"] + 2
    assert main(["--smoke", "--resume", str(out), "--total-steps", "9"]) == 0  # resumes as it is
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 3
    with pytest.raises(SystemExit) as stop:
        main(["--smoke", "--out", str(tmp_path / "new"), "--grow-layers", "1"])
    assert stop.value.code == 2 and "grows a trained run" in capsys.readouterr().err


def test_a_cpu_without_native_bf16_is_detected_and_a_bf16_leg_warns(tmp_path, monkeypatch, caplog):
    import logging

    import models.train as train

    flags = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw{}\n"
    assert train.cpu_has_native_bf16(flags.format(" avx512_bf16"))
    assert train.cpu_has_native_bf16(flags.format(" amx_bf16 amx_tile"))
    assert not train.cpu_has_native_bf16(flags.format(""))
    assert not train.cpu_has_native_bf16("")
    assert train.cpu_has_native_bf16("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")  # Arm
    assert not train.cpu_has_native_bf16("processor\t: 0\nFeatures\t: fp asimd\n")
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert not train.warn_if_bf16_is_emulated(False)  # fp32 runs: nothing to say
    with caplog.at_level(logging.WARNING, logger="models.train"):
        train_leg(smoke_config(), tmp_path / "run", minutes=5, resume=False, arc_dir=None, bf16=True)
    assert "no native bfloat16" in caplog.text and "--no-bf16" in caplog.text
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda cpuinfo=None: True)
    assert not train.warn_if_bf16_is_emulated(True)


def test_a_second_leg_on_a_run_in_use_is_refused_and_loses_nothing(tmp_path, capsys):
    from tests.models.legs import assert_a_held_run_refuses_a_second_leg

    assert main(["--smoke", "--out", str(tmp_path / "run"), "--steps", "2"]) == 0
    assert_a_held_run_refuses_a_second_leg(main, tmp_path / "run", capsys)
