"""Per-run knobs, given to the graph through ``context_schema`` / ``Runtime[Context]``.

One declaration per setting (pydantic-settings): each field of :class:`Context` is the setting's
default, its type, its help text and its section, and from it come the environment variable
``MOCKINGBIRD_<NAME>``, the command-line flag (:func:`graph.cli_common.add_context_flags`, so
``--help``) and ``.env.example`` (:func:`graph.settings.render_env_example`).

Precedence: explicit values (flags, keyword arguments) > environment > ``.env`` (the CLIs load
it into the environment without overriding real variables) > defaults. An explicit value wins
even when it equals the default: ``--strategy auto`` beats ``MOCKINGBIRD_STRATEGY=ttt``.

Secrets (the OpenAI key) are read from the environment by the model factory, never stored here.

Example::

    from graph.builder import graph
    from graph.context import Context
    graph.invoke({"task": task.model_dump(), "query": {"input": [[0, 1]]}},
                 context=Context(model="embedded", samples=1), version="v2")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal, cast, get_args

from pydantic import Field, JsonValue, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graph.errors import SettingsError
from models.base import ModelBackend
from models.factory import load_model
from models.ttt import BY_KIND, PRIOR_VOTES, RECIPES
from tasks.errors import first_error
from tasks.schema import TaskKind

#: Settings of ``sample_views``: ``by-kind`` uses views where :data:`KIND_SAMPLE_VIEWS` says so.
SAMPLE_VIEWS: tuple[str, ...] = (BY_KIND, "on", "off")
#: Measured (session 32, step 24,600, 4 samples): grids gain (held-out families 128 against 121 of 180, and
#: fewer confident wrong answers). Tables: their views' greedy labels agree so often that a vote
#: moved nothing (session 32: iris, wine, breast cancer 89.7 against 89.6 %), but (session 39,
#: table model step 23,500, 16 rows) the label distributions averaged over views (TabPFN's ensemble,
#: :meth:`nodes.icl.ICLPredictor._averaged_views`) gain on three held-out sets, 30,995 queries:
#: +55 right with 4 views, +75 with 8 (22 synthetic tables +25 / +14, 29 real +1 / +20, 73
#: synthetic +29 / +41), for 4 forward passes a query instead of one.
KIND_SAMPLE_VIEWS: dict[str, bool] = {"grid": True, "tabular": True}
#: Kinds whose ``by-kind`` views are those that average label probabilities: what was measured
#: (a classification table and a backend that scores). A vote of greedy labels moved nothing,
#: and a regression table's views were never measured: both keep the greedy answer.
AVERAGED_VIEW_KINDS = ("tabular",)


def sample_views_for(setting: str, kind: str, *, can_average: bool = True) -> bool:
    """Whether ICL's extra samples on a ``kind`` task are answers under views: ``on``/``off``, or
    for ``by-kind`` the kind's measured default (:data:`KIND_SAMPLE_VIEWS`, else off; for
    :data:`AVERAGED_VIEW_KINDS` only where the views ``can_average`` label probabilities)."""
    if setting != BY_KIND:
        return setting == "on"
    return KIND_SAMPLE_VIEWS.get(kind, False) and (can_average or kind not in AVERAGED_VIEW_KINDS)


#: Strategies the router knows. ``auto`` lets the router decide.
Strategy = Literal["auto", "icl", "select", "reflect", "ttt", "expert"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

ENV_PREFIX = "MOCKINGBIRD_"
JsonDict = dict[str, JsonValue]

#: Sections of ``.env.example``, in order: key -> title.
SECTIONS = {
    "model": "model",
    "strategy": "strategy",
    "ttt": "test-time training (strategy ttt)",
    "router": "reflection, the router and the expert",
}


def setting(default: Any, help: str, *, section: str, flag: str | None = None, env_help: str = "") -> Any:
    """One setting's declaration: default, help (``--help``), section and flag of ``.env.example``.

    Args:
        default: The default value (its type is the field's annotation).
        help: One line for ``--help``.
        section: Key of :data:`SECTIONS`.
        flag: The flag's name when it is not ``--<name-with-dashes>``.
        env_help: A longer comment for ``.env.example`` (default: ``help``).
    """
    extra: dict[str, Any] = {"section": section, "flag": flag, "env_help": env_help or help}
    return Field(default, description=help, json_schema_extra=cast(JsonDict, extra))


#: The numeric knobs' ranges, in the order they are checked: (fields, whether a value is in range,
#: the rule as the one-line error says it).
_RANGES: tuple[tuple[tuple[str, ...], Callable[[float], bool], str], ...] = (
    (("samples",), lambda v: v >= 1, "must be at least 1"),
    (("temperature",), lambda v: 0.0 <= v <= 5.0, "must be between 0 and 5"),
    (("max_demos",), lambda v: v >= 0, "must be 0 (all) or positive"),
    (("timeout_s",), lambda v: v > 0, "must be positive"),
    (
        ("max_attempts", "ttt_steps", "ttt_rank", "ttt_views", "reflect_rounds"),
        lambda v: v >= 1,
        "must be at least 1",
    ),
    (("ttt_cache", "budget_tokens"), lambda v: v >= 0, "must be 0 or positive"),
    (("budget_s",), lambda v: v >= 0, "must be 0 (no limit) or positive"),
    (("worth_s",), lambda v: v >= 0, "must be 0 (cost ignored) or positive"),
    (("confidence_threshold", "margin"), lambda v: 0.0 <= v <= 1.0, "must be between 0 and 1"),
    (("ttt_lr",), lambda v: v > 0, "must be positive"),
)


class Context(BaseSettings):
    """Knobs of one run; each field falls back to the environment variable ``MOCKINGBIRD_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", case_sensitive=False
    )

    # --- model ------------------------------------------------------------------------------
    model: str = setting(
        "embedded", "embedded, hf:PATH or openai:MODEL", section="model",
        env_help="embedded (the shipped offline model), hf:/path/to/local/checkpoint, or openai:MODEL_NAME",
    )  # fmt: skip
    openai_base_url: str = setting(
        "", "OpenAI-compatible server URL; empty = OpenAI", section="model",
        env_help="OpenAI-compatible server (vLLM, Ollama, llama.cpp server, ...); empty = api.openai.com",
    )  # fmt: skip
    timeout_s: float = setting(
        60.0, "deadline of one model call, seconds (retries and waits included)", section="model",
        flag="--timeout",
        env_help="Seconds one model call may take, retries and waits included, before it fails (never hangs)",
    )  # fmt: skip
    max_attempts: int = setting(
        4, "attempts per model call (one retry layer)", section="model",
        env_help="Attempts per model call, retries included (exactly one retry layer), within the deadline",
    )  # fmt: skip
    # --- strategy ---------------------------------------------------------------------------
    strategy: str = setting(
        "auto", f"one of {', '.join(STRATEGIES)}", section="strategy",
        env_help="auto (the router decides), icl, select, reflect, ttt (local models) or expert",
    )  # fmt: skip
    samples: int = setting(
        4, "samples per query; agreement is the confidence (tables: views averaged, else the greedy label)",
        section="strategy",
        env_help="Samples per query: agreement among them is the answer's confidence "
        "(on a table ICL averages the label's probability over this many views, or draws the greedy label "
        "only; the probability is the confidence)",
    )  # fmt: skip
    temperature: float = setting(
        0.7, "sampling temperature of the extra samples", section="strategy",
        env_help="Temperature of the samples after the first (greedy) one",
    )  # fmt: skip
    sample_views: str = setting(
        "by-kind",
        "ICL's samples after the first: answers under invertible views (by-kind: grids, and tables "
        "where the model scores; on: grids and tables; off: samples at the temperature)",
        section="strategy",
        env_help="How ICL's samples after the first differ: greedy answers under invertible views, mapped "
        "back (a grid's mirror and colour permutations; a table's row and column order and label names), "
        "or samples at the temperature: by-kind (views for grids, and for tables where the model scores "
        "labels: their probabilities averaged over views; measured), on or off",
    )  # fmt: skip
    max_demos: int = setting(
        0, "demonstrations in the prompt; 0 = all", section="strategy",
        env_help="Demonstrations shown in the prompt; 0 = all of the task's training examples",
    )  # fmt: skip
    seed: int = setting(
        0, "sampling seed, for reproducible runs", section="strategy",
        env_help="Sampling seed, for reproducible runs",
    )  # fmt: skip
    # --- test-time training -----------------------------------------------------------------
    ttt_steps: int = setting(
        40, "test-time training: optimisation steps", section="ttt",
        env_help="Optimisation steps of the temporary LoRA adapter (batch 8 sequences)",
    )  # fmt: skip
    ttt_lr: float = setting(
        2e-3, "test-time training: peak learning rate", section="ttt",
        env_help="Peak learning rate (cosine decay after 10 % warm-up)",
    )  # fmt: skip
    ttt_rank: int = setting(16, "test-time training: LoRA rank", section="ttt",
                            env_help="LoRA rank (alpha = 2 x rank)")  # fmt: skip
    ttt_views: int = setting(
        4, "test-time training: views voted on", section="ttt",
        env_help="Views (identity, mirror, colour permutations) the query is predicted under and voted on",
    )  # fmt: skip
    ttt_augment: bool = setting(
        True, "test-time training: train and vote over augmented views", section="ttt",
        env_help="Train on, and vote over, augmented views (false: identity only, one greedy prediction)",
    )  # fmt: skip
    ttt_prior_votes: str = setting(
        BY_KIND,
        "test-time training: the base model also votes, under the same views (by-kind: on for "
        "tables, off elsewhere; on; off)",
        section="ttt",
        env_help="The base model (no adapter) also predicts under the same views: its votes count beside "
        "the adapter's (ties to the adapter), on a table its label probabilities are mixed in; by-kind "
        "(on for tables, off elsewhere: measured), on or off",
    )  # fmt: skip
    ttt_early_stop: bool = setting(
        True, "test-time training: stop when a held-back demonstration stops improving (recipe plain)",
        section="ttt",
        env_help="Stop training when the held-back demonstration's loss stops improving (recipe plain; "
        "adaptive always stops, trial never)",
    )  # fmt: skip
    ttt_recipe: str = setting(
        "by-kind",
        "test-time training: recipe (by-kind: adaptive, plain for tables; adaptive: the trial's, "
        "stopping on a held-back demonstration; trial: no early stop; plain: the knobs)",
        section="ttt",
        env_help="Named recipe: by-kind (the one measured best for the task's kind: adaptive, plain for "
        "tables), adaptive (every output, leave-two-out, 60 sequences, early stopping), trial (the same, "
        "no early stop) or plain",
    )  # fmt: skip
    ttt_cache: int = setting(
        4, "test-time training: adapters kept per task (0 = no cache)", section="ttt",
        env_help="Adapters kept per task so later queries of the same task reuse them (0 = no cache)",
    )  # fmt: skip
    ttt_cache_dir: str = setting(
        "", "test-time training: also keep cached adapters in this folder", section="ttt",
        env_help="Also keep cached adapters on disk in this folder (empty = memory only)",
    )  # fmt: skip
    # --- reflection, the router and the expert ---------------------------------------------
    reflect_rounds: int = setting(
        2, "reflection: rounds of notes at most", section="router",
        env_help="Rounds of reflection notes at most (a round is kept only if held-out accuracy holds)",
    )  # fmt: skip
    budget_s: float = setting(
        0.0, "seconds the router may spend per query; 0 = no limit", section="router", flag="--budget",
        env_help="Seconds the router may spend on one query (0 = no limit)",
    )  # fmt: skip
    budget_tokens: int = setting(
        0, "tokens the router may spend per query; 0 = no limit", section="router",
        env_help="Tokens the router may spend on one query (0 = no limit)",
    )  # fmt: skip
    confidence_threshold: float = setting(
        0.6, "router: escalate while confidence is below this", section="router",
        env_help="The router escalates while the answer's confidence is below this",
    )  # fmt: skip
    margin: float = setting(
        0.05, "router: take the cheapest strategy within this of the best expected accuracy",
        section="router",
        env_help="The router takes the cheapest strategy whose expected accuracy is within this of the best",
    )  # fmt: skip
    worth_s: float = setting(
        300.0, "router: seconds of compute one more right answer is worth; 0 = cost ignored",
        section="router", flag="--worth",
        env_help="The router pays for an escalation only if its expected gain, less its expected seconds "
        "divided by this, beats the answer in hand (0 = cost ignored)",
    )  # fmt: skip
    expert_review: bool = setting(
        False, "router: escalate to a human expert as the last resort", section="router",
        env_help="Escalate to a human expert (the run waits for `python -m graph.review`) as a last resort",
    )  # fmt: skip

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc, given=set(values))) from None

    @model_validator(mode="after")
    def _check(self) -> Context:
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        return self

    def problem(self) -> str | None:
        """The first invalid knob as one line (``None`` when all are valid)."""
        if self.strategy not in STRATEGIES:
            return f"strategy: unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}"
        for names, within, rule in _RANGES:
            for name in names:
                value = getattr(self, name)
                if not within(value):
                    return f"{name}: {rule}, got {value}"
        if self.ttt_recipe not in (BY_KIND, *RECIPES):
            known = ", ".join((BY_KIND, *RECIPES))
            return f"ttt_recipe: unknown recipe {self.ttt_recipe!r}; expected one of {known}"
        if self.sample_views not in SAMPLE_VIEWS:
            return f"sample_views: got {self.sample_views!r}; expected one of {', '.join(SAMPLE_VIEWS)}"
        if self.ttt_prior_votes not in PRIOR_VOTES:
            return f"ttt_prior_votes: got {self.ttt_prior_votes!r}; expected one of {', '.join(PRIOR_VOTES)}"
        if not self.model.strip():
            return "model: must not be empty (embedded, hf:PATH or openai:MODEL)"
        return None

    def validate_knobs(self) -> None:
        """Check every knob again (after assignments); raise :class:`SettingsError` in one line."""
        problem = self.problem()
        if problem:
            raise SettingsError(problem)


def env_name(field: str) -> str:
    """The environment variable of a :class:`Context` field."""
    return ENV_PREFIX + field.upper()


_EXPECTED = {
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
    "string_type": "text",
}


def _one_line(exc: ValidationError, *, given: set[str]) -> str:
    """The first error of ``exc`` as one line naming the field, or its variable when from there."""
    err = first_error(exc)
    field = str(err.loc[0]) if err.loc else ""
    if err.type == "extra_forbidden":
        return f"{field}: unknown setting"
    if not field:  # a range check of the whole context: its message names the field
        name = err.message.split(":", 1)[0]
        if name in Context.model_fields and name not in given and os.environ.get(env_name(name)):
            return f"{err.message} (from {env_name(name)})"
        return err.message
    where = env_name(field) if field not in given and os.environ.get(env_name(field)) else field
    expected = _EXPECTED.get(err.type)
    if expected:
        return f"{where}: expected {expected}, got {err.input!r}"
    return f"{where}: {err.message}"


def context_help() -> dict[str, str]:
    """Field name -> help text, for the CLI and ``.env.example``."""
    return {name: str(f.description or "") for name, f in Context.model_fields.items()}


def resolve_model(ctx: Context, bound: ModelBackend | None, kind: TaskKind | None = None) -> ModelBackend:
    """The model for this run: bound to the graph (``build_graph(model=...)``) or from the context.

    With ``kind``, the backend that answers tasks of that kind (:meth:`ModelBackend.for_kind`:
    the embedded model hands tables to its table checkpoint). Local models are cached by the
    factory, so resolving per node is cheap.
    """
    model = bound
    if model is None:
        model = load_model(
            ctx.model,
            openai_base_url=ctx.openai_base_url or None,
            timeout_s=ctx.timeout_s,
            max_attempts=ctx.max_attempts,
        )
    return model.for_kind(kind) if kind is not None else model
