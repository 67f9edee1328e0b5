"""Test-time training (Akyürek et al., ICML 2025): a temporary LoRA adapter per task.

1. Data from the demonstrations only: leave-one-out episodes (each demonstration in turn is the
   last one, the others, shuffled, before it), seen through invertible views (``tasks.augment``).
   A training sequence is the whole episode; the loss is on the last output only
   (``loss_on="last"``, the default) or on **every demonstration output after the first**
   (``loss_on="all"``, the paper's recipe), never on inputs. The default was chosen by
   measurement on the bundled synthetic families (54 tasks, 18 families, the embedded model):
   last 9/54 vs all 6/54 exact (4 tasks solved only by "last", 1 only by "all"); with three
   demonstrations, "all" also trains on the second output given a single demonstration, where
   the rule is often ambiguous.
2. A fresh LoRA adapter is trained on them through the backend's ``adapter()`` context, so the
   base weights are bit-identical afterwards. With ``early_stop``, one demonstration is held back
   as a target and training stops once its loss stops improving (see :class:`TTTConfig`).
3. The query is predicted under several views, each answer mapped back by its view's inverse,
   and the answers are voted on hierarchically; the vote share is the confidence. With
   ``augment=False``: the identity view only, for training and for one greedy prediction. With
   ``prior_votes``, the base model's answers under the same views (predicted before the adapter
   is attached) vote too, ties to the adapter (:mod:`~models.ttt.predict`). On a classification
   table with a backend that scores, each label's probability is averaged over the views
   instead, the prior's mixed in at ``PRIOR_SHARE``; the top probability is the confidence.
4. With ``cache`` > 0 the trained adapter is kept (:mod:`models.adapter_cache`) and a later query
   of the same task, demonstrations and settings reuses it instead of training.

Example::

    result = run_ttt(backend, task, query_input, TTTConfig(steps=40))
    result.answers[0]  # (answer, share), best first

The modules: :mod:`~models.ttt.config` (settings, recipes, the result), :mod:`~models.ttt.data`
(episodes, views, loss-masked sequences), :mod:`~models.ttt.loop` (the optimisation loop and
early stopping), :mod:`~models.ttt.predict` (the vote) and :mod:`~models.ttt.run` (one run, the
adapter cache). Callers use the names below through this package: :func:`run_ttt` is looked up
here at each call (fault injection replaces it here, :mod:`graph.chaos.worker`).
"""

from __future__ import annotations

from models.ttt.config import (
    BY_KIND,
    PRIOR_SHARE,
    PRIOR_VOTES,
    RECIPES,
    Segment,
    StepHook,
    TTTConfig,
    TTTResult,
    prior_votes_for,
    recipe_for,
    with_recipe,
)
from models.ttt.data import _batch as _batch
from models.ttt.data import _episodes as _episodes
from models.ttt.data import episode_segments, leave_one_out, training_pairs, training_sequences
from models.ttt.run import run_ttt

__all__ = [
    "BY_KIND",
    "PRIOR_SHARE",
    "PRIOR_VOTES",
    "RECIPES",
    "Segment",
    "StepHook",
    "TTTConfig",
    "TTTResult",
    "episode_segments",
    "leave_one_out",
    "prior_votes_for",
    "recipe_for",
    "run_ttt",
    "training_pairs",
    "training_sequences",
    "with_recipe",
]
