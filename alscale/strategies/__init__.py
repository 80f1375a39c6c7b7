"""Pure-numpy selection strategies: arrays in, scores out (higher = more informative).

Nothing here imports Ray, reads files or talks to a network.

This module is also the registry: it registers every built-in strategy, each top-K scorer
alone and each diversity strategy as a builder and a selection from :mod:`alscale.reduce`.
It is the one place where scorers and reducers meet: nothing in ``alscale.reduce`` imports
``alscale.strategies``, and no other module here imports ``alscale.reduce``
(``tests/unit/test_layout.py`` checks both).
"""

from __future__ import annotations

from alscale.reduce.badge import BADGE_DEFAULTS, make_badge_builder, select_badge
from alscale.reduce.cluster_margin import (
    CLUSTER_MARGIN_DEFAULTS,
    make_cluster_margin_builder,
    prepare_cluster_margin,
    select_cluster_margin,
)
from alscale.reduce.kcenter import CORESET_DEFAULTS, make_coreset_builder, select_coreset
from alscale.strategies.base import STRATEGIES, ScoringBatch, Strategy, get_strategy, register
from alscale.strategies.committee import committee_scorer, kl_to_consensus, vote_entropy
from alscale.strategies.gradient import gradient_factors
from alscale.strategies.uncertainty import entropy, least_confidence, margin, random_scores

__all__ = [
    "STRATEGIES",
    "ScoringBatch",
    "Strategy",
    "entropy",
    "get_strategy",
    "gradient_factors",
    "kl_to_consensus",
    "least_confidence",
    "margin",
    "random_scores",
    "register",
    "vote_entropy",
]

# Scorers and builder factories as named functions, not lambdas: the engine pickles the strategy it sends each actor


def _score_entropy(batch: ScoringBatch):
    return entropy(batch.probs)


def _score_margin(batch: ScoringBatch):
    return margin(batch.probs)


def _score_least_confidence(batch: ScoringBatch):
    return least_confidence(batch.probs)


def _score_random(batch: ScoringBatch):
    return random_scores(batch.keys, batch.seed)


def _make_badge_builder(params):
    """BADGE's builder, computing each row's gradient factors with :func:`gradient_factors`."""
    return make_badge_builder(gradient_factors, params)


register(Strategy("entropy", "topk", _score_entropy, description="Shannon entropy of the class probabilities"))
register(Strategy("margin", "topk", _score_margin, description="1 - (p_top1 - p_top2): small margins first"))
register(Strategy("least-confidence", "topk", _score_least_confidence, description="1 - max class probability"))
register(Strategy("random", "topk", _score_random, description="uniform from (seed, id): the baseline"))

register(Strategy("qbc-vote", "topk", committee_scorer(vote_entropy, "qbc-vote"), needs_committee=True, description="entropy of the committee's hard votes"))
register(Strategy("qbc-kl", "topk", committee_scorer(kl_to_consensus, "qbc-kl"), needs_committee=True, description="mean KL divergence of each member from the consensus"))
register(
    Strategy(
        "badge", "diversity", needs_embedding=True, make_builder=_make_badge_builder, select=select_badge, defaults=BADGE_DEFAULTS,
        description="BADGE: k-means|| over factored gradient embeddings (Ash et al. 2020)",
    )
)
register(
    Strategy(
        "coreset", "diversity", needs_embedding=True, make_builder=make_coreset_builder, select=select_coreset, defaults=CORESET_DEFAULTS,
        description="greedy k-center on embeddings from the labeled rows (Sener & Savarese 2018)",
    )
)
register(
    Strategy(
        "cluster-margin", "diversity", needs_embedding=True, make_builder=make_cluster_margin_builder,
        select=select_cluster_margin, defaults=CLUSTER_MARGIN_DEFAULTS, prepare=prepare_cluster_margin,
        description="lowest-margin rows round-robin over embedding clusters (Citovsky et al. 2021)",
    )
)
