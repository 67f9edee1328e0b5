"""What the package ships beside its checkpoints: the weights, never a training leg's own files."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from models.legs import LOCK_FILE
from models.train import STATE_FILE

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _matches(patterns: list[str], path: str) -> bool:
    # setuptools reads "**" as any depth; fnmatch's "*" crosses "/" too, so this is at least as wide
    return any(fnmatch.fnmatch(path, p) for p in patterns)


def test_a_legs_state_and_lock_beside_a_checkpoint_never_ship() -> None:
    # a wheel built from a checkout that trained would otherwise carry the 85 MB optimiser state
    # (measured: train_state.pt was in the wheel before the exclusion)
    tool = _setuptools()
    shipped, excluded = tool["package-data"]["models"], tool["exclude-package-data"]["models"]
    for name in (STATE_FILE, STATE_FILE + ".tmp", LOCK_FILE):
        path = f"checkpoints/embedded/{name}"
        assert _matches(shipped, path) and _matches(excluded, path), name
    for name in ("model.safetensors", "config.json", "mockingbird.json", "tokenizer.json"):
        assert not _matches(excluded, f"checkpoints/embedded-tabular/{name}"), name
