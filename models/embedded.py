"""The embedded model: a small Llama-style decoder the project trains itself and ships.

It is an ordinary Hugging Face checkpoint (``config.json``, ``model.safetensors``, tokenizer
files) plus ``mockingbird.json``, which tells :class:`models.hf_backend.HFBackend` to use the
compact serialization and records how the model was trained. It loads through the same code
path as any local model (``hf:PATH``); ``embedded`` is just its shipped path.

Retrain it with ``python -m models.train`` (see that module).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Where the shipped checkpoint lives.
EMBEDDED_DIR = Path(__file__).resolve().parent / "checkpoints" / "embedded"
#: The shipped table model (:mod:`models.table_model`): ``embedded`` answers tables with it.
EMBEDDED_TABULAR_DIR = Path(__file__).resolve().parent / "checkpoints" / "embedded-tabular"
MARKER = "mockingbird.json"


@dataclass(kw_only=True)
class EmbeddedConfig:
    """Shape of the embedded transformer."""

    hidden_size: int = 192  # width: 3.56 M parameters at 6 layers (14 MB in fp32)
    num_layers: int = 6  # depth (copying needs two layers; reading a composed rule, more)
    num_heads: int = 6  # attention heads (head dim 32)
    intermediate_size: int = 768  # MLP width (4x hidden)
    max_positions: int = 1024  # longest episode in tokens (characters)
    rope_theta: float = 10000.0  # rotary embedding base
    tie_embeddings: bool = True  # input and output embeddings shared: fewer parameters


def build_model(cfg: EmbeddedConfig, *, seed: int = 0) -> Any:
    """A freshly initialised ``LlamaForCausalLM`` of shape ``cfg`` for the char tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from models.tokenizer import SPECIAL_TOKENS, vocabulary

    vocab = vocabulary()
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=vocab[SPECIAL_TOKENS[0]],
        bos_token_id=vocab[SPECIAL_TOKENS[1]],
        eos_token_id=vocab[SPECIAL_TOKENS[2]],
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


#: A decoder layer's output projections: zeroed, the layer adds nothing (:mod:`models.growth`).
LAYER_OUTPUTS = (
    "self_attn.o_proj.weight",
    "self_attn.o_proj.bias",
    "mlp.down_proj.weight",
    "mlp.down_proj.bias",
)


def grow_model(model: Any, extra: int) -> Any:
    """The same ``LlamaForCausalLM`` function with ``extra`` more decoder layers, each a copy of the
    layer before it with its output projections zeroed (:mod:`models.growth`)."""
    from transformers import LlamaForCausalLM

    from models.growth import grown_block_order, grown_state

    order = grown_block_order(model.config.num_hidden_layers, extra)
    config = model.config.__class__(**{**model.config.to_dict(), "num_hidden_layers": len(order)})
    grown = LlamaForCausalLM(config)
    grown.load_state_dict(grown_state(model.state_dict(), "model.layers.", order, LAYER_OUTPUTS))
    return grown.to(model.device)


def save_checkpoint(model: Any, out_dir: Path, *, extra: dict[str, Any]) -> None:
    """Write the model, its tokenizer and ``mockingbird.json`` (format + training facts)."""
    from models.tokenizer import build_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    build_tokenizer().save_pretrained(out_dir)
    (out_dir / MARKER).write_text(json.dumps({"format": "compact", **extra}, indent=2) + "\n")


def random_init_like(path: Path, *, seed: int = 0) -> Any:
    """A randomly initialised model with the same shape as the checkpoint at ``path``.

    The control that shows what pretraining contributes (same shape, no training).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    import models.table_model  # noqa: F401 - registers the table architecture with the Auto classes

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def config_dict(cfg: EmbeddedConfig) -> dict[str, Any]:
    """The shape as plain data, for ``mockingbird.json``."""
    return asdict(cfg)
