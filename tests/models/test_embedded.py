"""The embedded model: shape, forward pass, generation, the shipped checkpoint, the training smoke run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.base import PromptParts
from models.embedded import EMBEDDED_DIR, EmbeddedConfig, build_model, random_init_like
from models.tokenizer import build_tokenizer, vocabulary
from models.train import TrainConfig, curriculum_at, encode_episode, make_batch
from prompts.compact import CompactRenderer
from tasks.generators import sample_task

ROOT = Path(__file__).resolve().parents[2]
TINY = EmbeddedConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=256)


def test_episode_encoding_matches_the_tokenizer_and_masks_only_outputs():
    task = sample_task(random.Random(0), "mirror", n_train=2)
    vocab = vocabulary()
    ids, mask = encode_episode(task, vocab)
    text = "".join(f"I{''.join(map(str, p.input[0]))}O{''.join(map(str, p.output[0]))}\n" for p in task.train)
    q = task.test[0]
    text += f"I{''.join(map(str, q.input[0]))}O{''.join(map(str, q.target[0]))}\n"
    assert ids == build_tokenizer()(text).input_ids
    masked = "".join(ch for ch, m in zip("^" + text, mask, strict=True) if m)
    outputs = [*(p.output[0] for p in task.train), q.target[0]]
    assert masked == "".join("".join(map(str, o)) + "\n" for o in outputs)


def test_curriculum_starts_short_and_simple_and_reaches_the_full_range():
    cfg = TrainConfig(start_lengths=(6, 12), lengths=(6, 30), curriculum_steps=1000, compose_p=(0.1, 0.5))
    assert curriculum_at(0, cfg) == ((6, 12), 0.1)
    assert curriculum_at(500, cfg) == ((6, 21), pytest.approx(0.3))
    assert curriculum_at(1000, cfg) == curriculum_at(5000, cfg) == ((6, 30), 0.5)
    assert curriculum_at(3, TrainConfig(curriculum_steps=0))[0] == TrainConfig().lengths


def test_forward_pass_and_loss():
    model = build_model(TINY)
    vocab = vocabulary()
    batch = make_batch(
        [encode_episode(sample_task(random.Random(i)), vocab) for i in range(3)], vocab["<pad>"]
    )
    out = model(**batch)
    assert out.logits.shape == (*batch["input_ids"].shape, len(vocab))
    assert torch.isfinite(out.loss) and out.loss.item() > 0


def test_greedy_generation_produces_tokens():
    model = build_model(TINY).eval()
    tok = build_tokenizer()
    prompt = CompactRenderer().render(
        PromptParts(kind="grid", function={"name": "f", "signature": "f(g)"}, demos=[], query=[[0, 1, 2]])
    )
    ids = tok(prompt.text, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 5


def test_random_init_control_has_the_same_shape(tmp_path):
    model = build_model(TINY)
    model.save_pretrained(tmp_path)
    control = random_init_like(tmp_path, seed=1)
    assert sum(p.numel() for p in control.parameters()) == sum(p.numel() for p in model.parameters())
    assert not torch.equal(control.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_shipped_checkpoint_loads_through_transformers():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    size = sum(p.stat().st_size for p in EMBEDDED_DIR.iterdir() if p.name != "train_state.pt")
    assert size <= 20 * 1024 * 1024
    marker = json.loads((EMBEDDED_DIR / "mockingbird.json").read_text())
    assert marker["format"] == "compact"
    model = AutoModelForCausalLM.from_pretrained(EMBEDDED_DIR, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(EMBEDDED_DIR, local_files_only=True)
    assert tok("I01O").input_ids == build_tokenizer()("I01O").input_ids
    assert sum(p.numel() for p in model.parameters()) == marker["training"]["parameters"]


#: The shipped checkpoint is the training run itself (legs resume it; its ledger ships with it).
RUN_DIR = EMBEDDED_DIR


@pytest.mark.skipif(not (RUN_DIR / "config.json").exists(), reason="no training run committed yet")
def test_the_committed_training_run_has_its_ledger_and_loads():
    from transformers import AutoModelForCausalLM

    size = sum(p.stat().st_size for p in RUN_DIR.iterdir() if p.name != "train_state.pt")
    assert size <= 20 * 1024 * 1024
    marker = json.loads((RUN_DIR / "mockingbird.json").read_text())
    assert {"parameters", "config", "held_out_families"} <= set(marker["training"])
    needed = {"tokens", "cpu_hours", "gpu_hours", "steps", "held_out", "held_in", "bundled"}
    assert marker["ledger"] and needed <= set(marker["ledger"][-1])
    steps = [p["step"] for p in marker["curve"]]
    assert steps == sorted(steps) and steps[-1] == marker["ledger"][-1]["steps"]
    model = AutoModelForCausalLM.from_pretrained(RUN_DIR, local_files_only=True)
    assert sum(p.numel() for p in model.parameters()) == marker["training"]["parameters"]


@pytest.mark.slow
def test_training_smoke_run_writes_a_loadable_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "models.train", "--smoke", "--out", str(tmp_path / "ckpt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    from models.hf_backend import HFBackend

    backend = HFBackend(tmp_path / "ckpt")
    marker = json.loads((tmp_path / "ckpt" / "mockingbird.json").read_text())
    entry = marker["ledger"][-1]
    assert entry["steps"] == 6 and entry["tokens"] > 0 and entry["cpu_hours"] > 0
    assert set(entry["held_out_loss_by_demos"]) == {"0", "1", "2", "3"}
    assert set(entry["held_out_by_family"]) == set(marker["training"]["held_out_families"])
    assert marker["curve"][-1]["step"] == 6
    assert backend.renderer.name == "compact"
