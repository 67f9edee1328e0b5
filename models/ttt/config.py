"""Test-time training settings, named recipes, a run's result and the inputs its stages share."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from models.base import ModelBackend, Usage
from tasks.augment import Augmenter
from tasks.schema import Task

#: Called after each optimisation step with (step, steps, loss).
StepHook = Callable[[int, int, float], None]

#: A piece of a training sequence: its text and whether its tokens carry the loss.
Segment = tuple[str, bool]


@dataclass(kw_only=True)
class TTTConfig:
    """Settings of one test-time training run (defaults: the trial in the team notes).

    Early stopping (``early_stop``): one demonstration (drawn with ``seed``) is *held back as a
    target*: no training sequence ends with it and its output carries no loss, though it still
    appears as context, so episodes keep their length. Every ``eval_every`` steps the loss of its
    output given the other demonstrations (under the identity and a few training views) is
    measured; once it has not improved for ``patience`` evaluations in a row (and at least
    ``min_steps`` were run) training stops and the adapter goes back to its best evaluation. The
    held-back loss is a leave-one-out score of the adapter: the one signal of over-fitting that
    the demonstrations themselves can give. It needs three demonstrations (two left to train on);
    with fewer, training runs the full budget. Measured on the synthetic families (54 tasks): the
    same accuracy as the full 40 steps (9/54 both) in about 19 steps and ~40 % of the time.
    """

    r: int = 16  # LoRA rank
    alpha: int = 32  # LoRA alpha
    target_modules: str | list[str] = "all-linear"  # attention and MLP projections
    lr: float = 2e-3  # peak learning rate; cosine decay after 10 % warm-up
    weight_decay: float = 0.01  # AdamW, as in the paper
    steps: int = 40  # optimisation steps (the budget; early stopping may run fewer)
    batch_size: int = 8  # sequences per step
    train_views: int = 10  # views per leave-one-out episode (identity included)
    max_sequences: int = 250  # cap on training sequences per task (the paper's marc code)
    predict_views: int = 4  # views the query is predicted under
    prior_votes: bool = False  # the base model (no adapter) also votes, under the same views
    loss_on: Literal["all", "last"] = "last"  # outputs that carry the loss (measured; package doc)
    episodes: Literal["loo", "loo+l2o"] = "loo"  # leave-one-out only, or leave-two-out episodes too
    augment: bool = True  # False: identity view only, for training and one greedy prediction
    early_stop: bool = False  # hold back one demonstration and stop when its loss stops improving
    eval_every: int = 5  # steps between held-back evaluations
    patience: int = 2  # evaluations without improvement before stopping
    min_steps: int = 10  # never stop before this many steps (warm-up makes early losses noisy)
    seed: int = 0  # every random choice derives from this
    cache: int = 0  # adapters kept in memory per base model (0 = no cache)
    cache_dir: str = ""  # also keep them here on disk ("" = memory only)

    @property
    def prior_voting(self) -> bool:
        """Whether the prior votes: asked for, and there is a vote (views to predict under)."""
        return self.prior_votes and self.augment

    def training_settings(self) -> dict[str, Any]:
        """The settings that change the trained adapter (the cache key's share of the config)."""
        out = asdict(self)
        for name in ("predict_views", "prior_votes", "cache", "cache_dir"):
            out.pop(name)
        return out


#: Named recipes: settings that override a run's :class:`TTTConfig` (``--ttt-recipe``).
#: ``trial`` is the recipe of the team's first TTT trial (NOTES): loss on every output, no early
#: stopping, at most 60 sequences from leave-one-out and leave-two-out episodes in several orders;
#: it beat ``plain`` on the held-out families with the step-9,700 prior (58.3 % against 50.0 %).
#: ``adaptive`` (the graph's default) is the trial's data and loss with early stopping on a
#: held-back demonstration, so each task gets its own amount of adaptation: with the step-20,000
#: prior 15 steps beat 40 on held-out compositions (+4 and +1 of 36) and lost 7 of 45 on the
#: shared 1D-ARC types; ``adaptive`` came within 2 and 3 of the better of the two on each (README).
#: ``plain`` overrides nothing: the run's own knobs (by default loss on the last output, early
#: stopping on a held-back demonstration, leave-one-out episodes: about half the time).
RECIPES: dict[str, dict[str, Any]] = {
    "trial": {"loss_on": "all", "early_stop": False, "episodes": "loo+l2o", "max_sequences": 60},
    "plain": {},
    # the trial's data and loss, with early stopping deciding per task how far to adapt
    "adaptive": {"loss_on": "all", "early_stop": True, "episodes": "loo+l2o", "max_sequences": 60},
}


#: The recipe a run gets when it names none (``by-kind``, the default): the one measured best on
#: held-out tasks of each kind. ``adaptive`` on held-out grid families (above); ``plain`` on
#: held-out synthetic tables (22 classification tables, 880 queries, the step-6,000 table model):
#: plain 59.9 %, adaptive 58.1, trial 57.4, ICL 59.3 (plain: loss on the last label only,
#: leave-one-out episodes).
DEFAULT_RECIPE = "adaptive"
KIND_RECIPES: dict[str, str] = {"tabular": "plain"}

#: The setting that means "the measured default for the task's kind" (recipes, the prior's votes).
BY_KIND = "by-kind"


#: Settings of the prior's votes (``--ttt-prior-votes``): the kind's measured default, or always /
#: never. With the prior voting, the base model predicts the query under the same views before
#: the adapter is attached and its answers count beside the adapter's (ties go to the adapter):
#: where the adapter's views disagree, the prior's agreement decides. Measured on five held-out
#: grid suites (180 tasks, step-24,600 prior, ``adaptive``): 133 solved against 129 without
#: (ICL 121), per suite 0, +2, +2, +1, -1; the shared 1D-ARC types 35 of 45 either way; 3.5 %
#: more tokens (four greedy predictions beside an adapter's training). On 22 held-out
#: synthetic tables (880 queries) greedy votes changed nothing (57.6 against 57.8 %). The router,
#: re-measured with it on the grid suites, gained nothing (130 against 133 of 180) and the
#: bundled examples went from 9 to 8 of 10: off for grids and everything but tables.
#: On a classification table the adapter's and the prior's label *probabilities* are averaged
#: instead (:data:`PRIOR_SHARE`), and that pays: on for tables (``by-kind``, the run's default).
PRIOR_VOTES: tuple[str, ...] = (BY_KIND, "on", "off")
KIND_PRIOR_VOTES: dict[str, bool] = {"tabular": True}

#: A classification table's TTT answer with the prior voting: the prior's share of the averaged
#: label probabilities (the adapter's is the rest; both averaged over the same 4 views). Measured
#: at step 23,500 against ICL (the prior alone, share 1) on held-out tables, 16 demonstrations,
#: 5 splits x 30 queries, right answers beyond ICL's at prior shares 0 / 0.25 / 0.5 / 0.75:
#: 29 real tables (4,350 queries) -8 / -9 / +2 / +17, 22 synthetic (3,300) +12 / +34 / +47 / +35;
#: in all +4 / +25 / +49 / +52. The adapter alone, trained on 16 rows, trails the model it
#: adapts; a quarter of its say corrects the prior where the table's own rows disagree with it.
PRIOR_SHARE = 0.75


def prior_votes_for(setting: str, kind: str) -> bool:
    """Whether the prior votes on a ``kind`` task: ``on``/``off``, or for ``by-kind`` the kind's
    measured default (:data:`KIND_PRIOR_VOTES`, else off)."""
    return KIND_PRIOR_VOTES.get(kind, False) if setting == BY_KIND else setting == "on"


def recipe_for(recipe: str, kind: str) -> str:
    """The named recipe a run of a ``kind`` task uses: ``recipe`` itself, or for ``by-kind`` the
    kind's measured default (:data:`KIND_RECIPES`, else :data:`DEFAULT_RECIPE`)."""
    return KIND_RECIPES.get(kind, DEFAULT_RECIPE) if recipe == BY_KIND else recipe


def with_recipe(cfg: TTTConfig, recipe: str) -> TTTConfig:
    """``cfg`` with the named recipe's settings applied.

    Raises:
        ValueError: If the recipe is unknown.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown TTT recipe {recipe!r}; known: {', '.join(RECIPES)}")
    return TTTConfig(**{**asdict(cfg), **RECIPES[recipe]})


@dataclass
class TTTResult:
    """What a test-time training run produced."""

    answers: list[tuple[Any, float]]  # (answer, vote share or probability), best first (top-2 for pass@2)
    losses: list[float] = field(default_factory=list)  # training loss per step run
    sequences: int = 0  # training sequences built from the demonstrations
    seconds: float = 0.0  # wall time, training and prediction
    steps_run: int = 0  # optimisation steps actually run (0 when a cached adapter was reused)
    stopped_early: bool = False  # early stopping ended training before the budget
    best_step: int | None = None  # step of the best held-back evaluation (early stopping)
    held_back_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) per evaluation
    reused: bool = False  # a cached adapter answered; nothing was trained
    views: int = 0  # predictions voted on (the adapter's, and the prior's with prior_votes)
    prior: bool = False  # the base model predicted too (prior_votes, more than one view)
    averaged: bool = False  # a classification table: label probabilities averaged, not votes
    tokens_trained: int = 0  # tokens run forward and backward in training (held-back evaluations too)
    usage: Usage = field(default_factory=Usage)  # the predictions' token accounting


@dataclass
class Job:
    """One run's inputs and the views drawn for it, handed from stage to stage.

    ``rng`` has drawn the views already; training draws the rest from it (the held-back
    demonstration, episode orders), in a fixed order, so a seed reproduces a run.
    """

    model: ModelBackend  # a local backend (it adapts and has a tokenizer; checked by run_ttt)
    task: Task  # the task whose demonstrations are trained on
    query: Any  # the input to answer
    cfg: TTTConfig  # the run's settings
    rng: random.Random  # every random choice of the run
    views: list[Augmenter]  # training views
    predict_views: list[Augmenter]  # views the query is predicted under
    on_step: StepHook | None = None  # progress after each optimisation step

    @property
    def tokenizer(self) -> Any:
        """The local backend's tokenizer."""
        return getattr(self.model, "tokenizer", None)
