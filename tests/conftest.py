"""Shared test fixtures: tiny local checkpoints built on the fly (no downloads, < 1 s each)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def in_ci() -> bool:
    """Whether the tests run in CI (``.ci/run`` sets ``CI=true``, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a skip of a test marked ``required_in_ci`` is a failure: CI installs the component
    (Chromium, ``transformers serve``...), so a skip there means the claim went untested."""
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("required_in_ci")
    if report.skipped and marker is not None and in_ci() and not hasattr(report, "wasxfail"):
        component = marker.args[0] if marker.args else "a required component"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where {component} must be installed: {reason}"


#: Variables that configure runs: a developer's shell (or CI) must not change what tests see.
SETTINGS_ENV = ("MOCKINGBIRD_", "OPENAI_API_KEY", "OPENAI_BASE_URL")


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear ``MOCKINGBIRD_*`` and the OpenAI variables; a test that needs one sets it itself.

    ``.env`` files never reach tests either: library code does not read them (only the CLIs do,
    from their working directory, and the CLI tests run in a fresh temporary one).
    """
    for name in list(os.environ):
        if name.startswith(SETTINGS_ENV):
            monkeypatch.delenv(name)


def build_tiny_checkpoint(path: Path, *, compact: bool = True, seed: int = 0) -> Path:
    """Save a randomly initialised tiny Llama with the project's char-level tokenizer.

    Args:
        path: Directory to write (created).
        compact: Write ``mockingbird.json`` ``{"format": "compact"}`` (the embedded model's
            marker); without it backends render the role-play chat prompt.
        seed: torch seed for the initial weights.

    Returns:
        ``path``.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from models.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # An explicit, minimal generation config: no sampling defaults leak into tests.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    if compact:
        (path / "mockingbird.json").write_text(json.dumps({"format": "compact"}) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama checkpoint marked as compact-format (like the embedded model)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "compact", compact=True)


@pytest.fixture(scope="session")
def tiny_chat_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model without the compact marker: rendered with the chat prompt."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "chat", compact=False)


@pytest.fixture
def tiny(tiny_checkpoint: Path):
    """The tiny compact checkpoint loaded as a backend, fresh (the model cache cleared first)."""
    from models.factory import clear_model_cache, load_model

    clear_model_cache()
    return load_model(f"hf:{tiny_checkpoint}")


@pytest.fixture
def no_cached_adapters():
    """The TTT adapter cache is process-wide and keyed on weights: keep tests independent."""
    from models.adapter_cache import ADAPTERS

    ADAPTERS.clear()
    yield
    ADAPTERS.clear()
