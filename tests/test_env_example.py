"""`.env.example` is generated from the settings' declarations, so it lists every one of them."""

from __future__ import annotations

from pathlib import Path

from graph.context import Context, env_name
from graph.settings import ProcessSettings, render_env_example

ENV_EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def test_env_example_is_the_generated_text():
    # regenerate with: python -m graph.settings > .env.example
    assert ENV_EXAMPLE.read_text() == render_env_example()


def test_every_setting_is_in_env_example_with_its_default():
    text = ENV_EXAMPLE.read_text()
    for model in (Context, ProcessSettings):
        for name, info in model.model_fields.items():
            default = str(info.default).lower() if isinstance(info.default, bool) else str(info.default)
            assert f"\n{env_name(name)}={default}\n" in text, name
    assert "\nOPENAI_API_KEY=\n" in text and "\nLANGGRAPH_STRICT_MSGPACK=true\n" in text
