"""load_model: spec parsing, caching of local models and one-line configuration errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from models import factory
from models.base import ModelConfigError
from models.factory import clear_model_cache, load_model
from models.hf_backend import HFBackend
from models.openai_backend import OpenAIBackend


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch):
    for name in (*factory.API_KEY_ENV, *factory.BASE_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.mark.parametrize("spec", ["", "gpt-4o", "hf", "huggingface:x", "openai", "embeded"])
def test_unknown_spec(spec: str) -> None:
    with pytest.raises(ModelConfigError) as info:
        load_model(spec)
    message = str(info.value)
    assert "expected embedded, hf:PATH or openai:MODEL" in message
    assert "\n" not in message


def test_hf_path_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="not found"):
        load_model(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ModelConfigError, match="empty path"):
        load_model("hf:")


def test_hf_models_are_cached_per_device(tiny_checkpoint: Path) -> None:
    first = load_model(f"hf:{tiny_checkpoint}")
    assert isinstance(first, HFBackend)
    assert first.name == f"hf:{tiny_checkpoint}"
    assert load_model(f"hf:{tiny_checkpoint}") is first
    assert set(factory._cache) == {(f"hf:{tiny_checkpoint}", "cpu")}
    clear_model_cache()
    assert load_model(f"hf:{tiny_checkpoint}") is not first


def test_embedded_uses_embedded_dir(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    fake = types.ModuleType("models.embedded")
    fake.EMBEDDED_DIR = tiny_checkpoint
    fake.EMBEDDED_TABULAR_DIR = tmp_path / "no-table-model"
    monkeypatch.setitem(sys.modules, "models.embedded", fake)
    backend = load_model("embedded")
    assert isinstance(backend, HFBackend) and backend.name == "embedded"
    assert load_model("embedded") is backend
    assert backend.for_kind("tabular") is backend  # no table model shipped: the text model answers

    clear_model_cache()
    fake.EMBEDDED_DIR = tmp_path / "not-trained"
    with pytest.raises(ModelConfigError, match="not built yet"):
        load_model("embedded")


def test_openai_needs_a_key() -> None:
    with pytest.raises(ModelConfigError) as info:
        load_model("openai:gpt-4o-mini")
    assert "OPENAI_API_KEY" in str(info.value) and "MOCKINGBIRD_OPENAI_API_KEY" in str(info.value)


def test_openai_empty_model_name() -> None:
    with pytest.raises(ModelConfigError, match="empty model name"):
        load_model("openai:", openai_api_key="sk-x")


def test_openai_from_arguments_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = load_model(
        "openai:m1", openai_api_key="sk-arg", openai_base_url="http://127.0.0.1:9/v1", timeout_s=3
    )
    assert isinstance(backend, OpenAIBackend)
    assert backend.name == "openai:m1" and backend.retry.timeout_s == 3
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0123456789")
    backend = load_model("openai:m2", max_attempts=2)
    assert isinstance(backend, OpenAIBackend) and backend.retry.max_attempts == 2
    assert "sk-from-env" not in repr(backend)
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("MOCKINGBIRD_OPENAI_API_KEY", "sk-mb")
    assert isinstance(load_model("openai:m3"), OpenAIBackend)


def test_embedded_answers_tables_with_its_table_model(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path, tiny_table_checkpoint: Path
) -> None:
    fake = types.ModuleType("models.embedded")
    fake.EMBEDDED_DIR = tiny_checkpoint
    fake.EMBEDDED_TABULAR_DIR = tiny_table_checkpoint
    monkeypatch.setitem(sys.modules, "models.embedded", fake)
    backend = load_model("embedded")
    assert backend.for_kind("grid") is backend and backend.for_kind("list") is backend
    table = backend.for_kind("tabular")
    assert table is not backend and table.name == "embedded[tabular]"
    assert type(table.model).__name__ == "TableModel"
    assert backend.for_kind("tabular") is table  # loaded once, cached like any local model
    assert table.for_kind("tabular") is table
