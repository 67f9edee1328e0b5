"""HFBackend on tiny random checkpoints: generation, stop strings, scoring, adapters."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from models.base import ChatMessage, ModelConfigError, ModelError, RenderedPrompt
from models.hf_backend import HFBackend
from prompts.chat import ChatRenderer
from prompts.compact import CompactRenderer

PROMPT = RenderedPrompt(text="I0033O0033\nI0500O", max_new_tokens=12)


@pytest.fixture(scope="module")
def model(tiny_checkpoint: Path) -> HFBackend:
    return HFBackend(tiny_checkpoint)


def state_hash(backend: HFBackend) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(backend.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_module_import_is_light() -> None:
    heavy = "('torch', 'transformers', 'peft', 'langchain_openai')"
    code = f"import sys, models.hf_backend, models.factory; print(any(m in sys.modules for m in {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_loads_with_compact_renderer(model: HFBackend, tiny_checkpoint: Path) -> None:
    assert isinstance(model.renderer, CompactRenderer)
    assert model.name == f"hf:{tiny_checkpoint}"
    assert model.capabilities.logprobs and model.capabilities.score and model.capabilities.adapt
    assert HFBackend(tiny_checkpoint, name="embedded").name == "embedded"


def test_chat_checkpoint_renders_through_chat_template(tiny_chat_checkpoint: Path) -> None:
    backend = HFBackend(tiny_chat_checkpoint)
    assert isinstance(backend.renderer, ChatRenderer)
    prompt = RenderedPrompt(
        messages=[ChatMessage(role="system", content="S"), ChatMessage(role="user", content="U")],
        max_new_tokens=4,
    )
    ids = backend.encode_prompt(prompt)
    tok = backend.tokenizer
    # The template writes <bos> then the contents; exactly one <bos>.
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.decode(ids, skip_special_tokens=True) == "SU"
    gen = backend.generate(prompt)
    assert len(gen.samples) == 1 and gen.usage.prompt_tokens == len(ids)


def test_missing_directory_or_config(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="not found"):
        HFBackend(tmp_path / "nope")
    with pytest.raises(ModelConfigError, match=r"config\.json"):
        HFBackend(tmp_path)


def test_unknown_format_marker(tmp_path: Path, tiny_checkpoint: Path) -> None:
    import shutil

    target = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, target)
    (target / "mockingbird.json").write_text(json.dumps({"format": "morse"}))
    with pytest.raises(ModelConfigError, match="unknown format"):
        HFBackend(target)


def test_greedy_is_deterministic_and_copied(model: HFBackend) -> None:
    first = model.generate(PROMPT, temperature=0.0)
    again = model.generate(PROMPT, n=3, temperature=0.0)
    assert len(again.samples) == 3
    assert {s.text for s in again.samples} == {first.samples[0].text}
    sample = first.samples[0]
    assert sample.token_logprobs is not None
    assert 0 < len(sample.token_logprobs) <= 12
    assert all(lp <= 0 for lp in sample.token_logprobs)
    assert sample.logprob == pytest.approx(sum(sample.token_logprobs))
    # One sequence computed, however many copies are returned.
    assert again.usage == first.usage
    assert first.usage.prompt_tokens == len(model.encode_prompt(PROMPT))
    assert first.usage.requests == 1
    assert first.seconds > 0


def test_sampling_n_with_seed(model: HFBackend) -> None:
    a = model.generate(PROMPT, n=4, temperature=1.5, seed=123)
    b = model.generate(PROMPT, n=4, temperature=1.5, seed=123)
    c = model.generate(PROMPT, n=4, temperature=1.5, seed=124)
    assert len(a.samples) == 4
    assert [s.text for s in a.samples] == [s.text for s in b.samples]
    assert [s.text for s in a.samples] != [s.text for s in c.samples]
    assert len({s.text for s in a.samples}) > 1  # a random model at T=1.5 varies
    for s in a.samples:
        assert s.token_logprobs is not None and len(s.token_logprobs) <= 12
    kept = sum(len(s.token_logprobs) for s in a.samples)
    # Tokens computed: those kept, plus one eos per sample that ended on it.
    assert kept <= a.usage.completion_tokens <= kept + 4


def test_seed_leaves_global_rng_alone(model: HFBackend) -> None:
    import torch

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    model.generate(PROMPT, n=2, temperature=1.0, seed=99)
    assert torch.equal(torch.rand(3), expected)


def test_stop_strings_cut_the_text(model: HFBackend) -> None:
    free = model.generate(PROMPT, temperature=0.0, max_new_tokens=16).samples[0].text
    assert len(free) >= 4, f"greedy text too short to pick a stop string from: {free!r}"
    stop = free[2:4]
    expected = free[: free.find(stop)]
    stopped = model.generate(
        RenderedPrompt(text=PROMPT.text, stop=["@@never@@", stop], max_new_tokens=16), temperature=0.0
    ).samples[0]
    assert stopped.text == expected
    # The tokens that wrote the stop string count (they are what the model produced).
    n_tokens = len(model.tokenizer(expected + stop, add_special_tokens=False)["input_ids"])
    assert len(stopped.token_logprobs) == n_tokens


def test_stop_in_sampled_batch_rows(model: HFBackend) -> None:
    prompt = RenderedPrompt(text=PROMPT.text, stop=["0", "1", "2", "3"], max_new_tokens=30)
    for sample in model.generate(prompt, n=6, temperature=2.0, seed=3).samples:
        assert not any(ch in sample.text for ch in "0123")


def test_score_matches_manual_log_prob_sum(model: HFBackend) -> None:
    import torch

    candidates = ["0500\n", "0050\n", "x", ""]
    scores = model.score(PROMPT, candidates)
    assert len(scores) == 4 and scores[3] == 0.0
    prompt_ids = model.encode_prompt(PROMPT)
    for cand, got in zip(candidates[:3], scores[:3], strict=True):
        cand_ids = model.tokenizer(cand, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model.model(torch.tensor([prompt_ids + cand_ids])).logits[0]
        logp = logits.log_softmax(-1)
        manual = sum(float(logp[len(prompt_ids) - 1 + i, t]) for i, t in enumerate(cand_ids))
        assert got == pytest.approx(manual, abs=1e-4)
    # Single-token candidates are read from one pass over the prompt: the same log-probabilities.
    singles = ["0", "5", "\n"]
    assert model.score(PROMPT, singles) == pytest.approx(
        [model.score(PROMPT, [c, "xx"])[0] for c in singles], abs=1e-5
    )
    # A longer continuation of the same text is less likely.
    longer, shorter = model.score(PROMPT, ["0500\n0500\n", "0500\n"])
    assert longer < shorter


def test_score_usage_counts_like_generate(model: HFBackend) -> None:
    # The prompt once, as generate counts it, and every candidate's tokens as completion.
    usage = model.score_usage(PROMPT, ["0500\n", "x"])
    gen = model.generate(PROMPT, temperature=0.0, max_new_tokens=2)
    assert usage.prompt_tokens == gen.usage.prompt_tokens == len(model.encode_prompt(PROMPT))
    assert usage.completion_tokens == 6 and usage.requests == 1


def test_greedy_logprob_equals_score(model: HFBackend) -> None:
    sample = model.generate(PROMPT, temperature=0.0).samples[0]
    assert model.score(PROMPT, [sample.text])[0] == pytest.approx(sample.logprob, abs=1e-4)


def test_score_on_chat_prompt(tiny_chat_checkpoint: Path) -> None:
    backend = HFBackend(tiny_chat_checkpoint)
    prompt = RenderedPrompt(messages=[ChatMessage(role="user", content="Input: [[1]]\nOutput:")])
    a, b = backend.score(prompt, ["[[1]]", "[[2]]"])
    assert a != b and a < 0 and b < 0


def test_adapter_leaves_base_bit_identical(model: HFBackend) -> None:
    import torch

    before = state_hash(model)
    base_scores = model.score(PROMPT, ["0500\n", "1\n"])
    names_before = [n for n, _ in model.model.named_parameters()]
    with model.adapter(r=4, lora_alpha=8) as peft_model:
        trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in n for n in trainable)
        # Initially LoRA's B is zero: the adapted model equals the base.
        assert model.score(PROMPT, ["0500\n", "1\n"]) == pytest.approx(base_scores, abs=1e-5)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.fill_(0.05)
        adapted = model.score(PROMPT, ["0500\n", "1\n"])
        assert adapted != pytest.approx(base_scores, abs=1e-3)  # generate/score see the adapter
        with pytest.raises(ModelError, match="already active"), model.adapter():
            pass
    assert state_hash(model) == before
    assert [n for n, _ in model.model.named_parameters()] == names_before
    assert model.score(PROMPT, ["0500\n", "1\n"]) == base_scores
    assert not model.model.training
    # And again: a second adapter starts fresh.
    with model.adapter(r=2):
        pass
    assert state_hash(model) == before


def test_other_threads_wait_for_the_adapter(model: HFBackend) -> None:
    import torch

    base = model.score(PROMPT, ["1\n"])
    results: list[list[float]] = []
    with model.adapter(r=2) as peft_model:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.fill_(0.05)
        worker = threading.Thread(target=lambda: results.append(model.score(PROMPT, ["1\n"])))
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive(), "another thread scored with the adapted weights"
    worker.join(timeout=30)
    assert results == [base]


def test_adapter_rejects_bad_settings(model: HFBackend) -> None:
    before = state_hash(model)
    with pytest.raises(ModelConfigError), model.adapter(no_such_option=1):
        pass
    assert state_hash(model) == before


def test_bad_prompt(model: HFBackend) -> None:
    with pytest.raises(ModelError):
        model.generate(RenderedPrompt())
    with pytest.raises(ModelError):
        model.generate(PROMPT, n=0)
