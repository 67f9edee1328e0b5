"""`.env.example` lists every run setting, so users can discover them all."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from graph.context import ENV_PREFIX, Context


def test_every_context_field_is_in_env_example():
    text = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    missing = [f.name for f in fields(Context) if f"{ENV_PREFIX}{f.name.upper()}=" not in text]
    assert missing == []
