"""A tiny local model and a small task for the chaos families (no downloads, ~1 s to build).

The model is a randomly initialised 2-layer Llama with the project's character tokenizer: its
answers are wrong but deterministic for a seed, which is what a crash test needs (an interrupted
run must end exactly as an uninterrupted one), and it is small enough that test-time training
takes a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.schema import Example, MockFunction, Query, Task


def build_tiny_checkpoint(path: Path, *, seed: int = 0, compact: bool = True) -> Path:
    """Save a randomly initialised tiny Llama (hidden 32, 2 layers) with the project's tokenizer.

    Args:
        path: Directory to write (created); reused when it already holds a checkpoint.
        seed: torch seed of the initial weights.
        compact: Mark it as compact-format (like the embedded model) in ``mockingbird.json``.

    Returns:
        ``path``.
    """
    if (path / "config.json").exists():
        return path
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


def mirror_task(task_id: str = "chaos_mirror") -> Task:
    """A 1-D grid task (mirror the row) with three demonstrations and one scored query."""
    rows = [[0, 1, 2, 0], [3, 0, 0, 4], [5, 5, 0, 6]]
    return Task(
        id=task_id,
        kind="grid",
        type="chaos",
        function=MockFunction(name="mirror", signature="mirror(grid) -> grid", docstring="Reverse the row."),
        train=[Example(input=[r], output=[r[::-1]]) for r in rows],
        test=[Query(input=[[7, 0, 8, 9]], target=[[9, 8, 0, 7]])],
    )


def write_task(path: Path, task: Task) -> Path:
    """Write ``task`` as a task JSON file (the project's own format)."""
    path.write_text(json.dumps(task.model_dump(mode="json", exclude={"source"})), encoding="utf-8")
    return path


def task_json(task: Task) -> dict[str, Any]:
    """A task as JSON-able data, to hand to a child process."""
    return task.model_dump(mode="json")
