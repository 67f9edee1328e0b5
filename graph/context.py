"""Per-run knobs, given to the graph through ``context_schema`` / ``Runtime[Context]``.

Every field falls back to an environment variable ``MOCKINGBIRD_<FIELD>`` (upper case) when it is
left at its default, so ``.env`` (see ``.env.example``) configures runs without flags. Secrets
(the OpenAI key) are read from the environment by the model factory, never stored here.

Example::

    from graph.builder import graph
    from graph.context import Context
    graph.invoke({"task": task.model_dump(), "query": {"input": [[0, 1]]}},
                 context=Context(model="embedded", samples=1), version="v2")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from graph.errors import SettingsError
from models.ttt import RECIPES

#: Strategies the router knows. ``auto`` lets the router decide.
Strategy = Literal["auto", "icl", "select", "reflect", "ttt", "expert"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

ENV_PREFIX = "MOCKINGBIRD_"


@dataclass(kw_only=True)
class Context:
    """Knobs of one run; each documented field has an env fallback ``MOCKINGBIRD_<NAME>``."""

    model: str = field(default="embedded", metadata={"help": "embedded, hf:PATH or openai:MODEL"})
    strategy: str = field(default="auto", metadata={"help": "auto (router decides) or a strategy name"})
    samples: int = field(default=4, metadata={"help": "samples per query; agreement is the confidence"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature of the extra samples"})
    max_demos: int = field(default=0, metadata={"help": "demonstrations in the prompt; 0 = all"})
    seed: int = field(default=0, metadata={"help": "sampling seed, for reproducible runs"})
    timeout_s: float = field(default=60.0, metadata={"help": "time-out of one model request, seconds"})
    max_attempts: int = field(default=4, metadata={"help": "attempts per model call (one retry layer)"})
    openai_base_url: str = field(
        default="", metadata={"help": "OpenAI-compatible server URL; empty = OpenAI"}
    )
    ttt_steps: int = field(default=40, metadata={"help": "test-time training: optimisation steps"})
    ttt_lr: float = field(default=2e-3, metadata={"help": "test-time training: peak learning rate"})
    ttt_rank: int = field(default=16, metadata={"help": "test-time training: LoRA rank"})
    ttt_views: int = field(default=4, metadata={"help": "test-time training: views voted on"})
    ttt_augment: bool = field(
        default=True, metadata={"help": "test-time training: train and vote over augmented views"}
    )
    ttt_early_stop: bool = field(
        default=True,
        metadata={"help": "test-time training: stop when a held-back demonstration stops improving"},
    )
    ttt_recipe: str = field(
        default="default",
        metadata={
            "help": "test-time training: recipe (default, or trial: loss on every output, no early stop)"
        },
    )
    ttt_cache: int = field(
        default=4, metadata={"help": "test-time training: adapters kept per task id (0 = no cache)"}
    )
    ttt_cache_dir: str = field(
        default="", metadata={"help": "test-time training: also keep cached adapters in this folder"}
    )
    reflect_rounds: int = field(default=2, metadata={"help": "reflection: rounds of notes at most"})
    budget_s: float = field(
        default=0.0, metadata={"help": "seconds the router may spend per query; 0 = no limit"}
    )
    budget_tokens: int = field(
        default=0, metadata={"help": "tokens the router may spend per query; 0 = no limit"}
    )
    confidence_threshold: float = field(
        default=0.6, metadata={"help": "router: escalate while confidence is below this"}
    )
    margin: float = field(
        default=0.05,
        metadata={"help": "router: take the cheapest strategy within this of the best expected accuracy"},
    )
    expert_review: bool = field(
        default=False, metadata={"help": "router: escalate to a human expert as the last resort"}
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) != f.default:
                continue  # explicit values win over the environment
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                setattr(self, f.name, _coerce(f.name, raw, type(f.default)))
        self.validate()

    def validate(self) -> None:
        """Check every knob; raise :class:`SettingsError` with a one-line message."""
        if self.strategy not in STRATEGIES:
            raise SettingsError(
                f"strategy: unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}"
            )
        if self.samples < 1:
            raise SettingsError(f"samples: must be at least 1, got {self.samples}")
        if not 0.0 <= self.temperature <= 5.0:
            raise SettingsError(f"temperature: must be between 0 and 5, got {self.temperature}")
        if self.max_demos < 0:
            raise SettingsError(f"max_demos: must be 0 (all) or positive, got {self.max_demos}")
        if self.timeout_s <= 0:
            raise SettingsError(f"timeout_s: must be positive, got {self.timeout_s}")
        if self.max_attempts < 1:
            raise SettingsError(f"max_attempts: must be at least 1, got {self.max_attempts}")
        for name in ("ttt_steps", "ttt_rank", "ttt_views", "reflect_rounds"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("ttt_cache", "budget_tokens"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name}: must be 0 or positive, got {getattr(self, name)}")
        if self.budget_s < 0:
            raise SettingsError(f"budget_s: must be 0 (no limit) or positive, got {self.budget_s}")
        for name in ("confidence_threshold", "margin"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SettingsError(f"{name}: must be between 0 and 1, got {getattr(self, name)}")
        if self.ttt_recipe not in RECIPES:
            known = ", ".join(RECIPES)
            raise SettingsError(f"ttt_recipe: unknown recipe {self.ttt_recipe!r}; expected one of {known}")
        if self.ttt_lr <= 0:
            raise SettingsError(f"ttt_lr: must be positive, got {self.ttt_lr}")
        if not self.model.strip():
            raise SettingsError("model: must not be empty (embedded, hf:PATH or openai:MODEL)")


def _coerce(name: str, raw: str, kind: type) -> Any:
    """Convert an environment string to the field's type, with a clear error."""
    env = ENV_PREFIX + name.upper()
    if kind is bool:
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{env}: expected true or false, got {raw!r}")
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise SettingsError(f"{env}: expected {expected}, got {raw!r}") from None
    return raw


def context_help() -> dict[str, str]:
    """Field name -> help text, for the CLI and ``.env.example``."""
    return {f.name: str(f.metadata.get("help", "")) for f in fields(Context)}
