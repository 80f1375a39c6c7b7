"""Pure-numpy selection strategies: arrays in, scores out (higher = more informative).

Nothing here imports Ray, reads files or talks to a network.
"""

from __future__ import annotations

from alscale.strategies.base import STRATEGIES, ScoringBatch, Strategy, get_strategy, register
from alscale.strategies.uncertainty import entropy, least_confidence, margin, random_scores

__all__ = [
    "STRATEGIES",
    "ScoringBatch",
    "Strategy",
    "entropy",
    "get_strategy",
    "least_confidence",
    "margin",
    "random_scores",
    "register",
]

register(Strategy("entropy", "topk", lambda b: entropy(b.probs), description="Shannon entropy of the class probabilities"))
register(Strategy("margin", "topk", lambda b: margin(b.probs), description="1 - (p_top1 - p_top2): small margins first"))
register(Strategy("least-confidence", "topk", lambda b: least_confidence(b.probs), description="1 - max class probability"))
register(Strategy("random", "topk", lambda b: random_scores(b.keys, b.seed), description="uniform from (seed, id): the baseline"))
