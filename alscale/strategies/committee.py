"""Query-by-committee disagreement scores: vote entropy and mean KL from the consensus.

Both take ``member_probs`` of shape (m, n, c) (m committee members) and return float32
scores of shape (n,), higher = more disagreement = more informative.  O(m*n*c).

References
----------
Seung, H. S., Opper, M., Sompolinsky, H. (1992). Query by committee. COLT.
McCallum, A., Nigam, K. (1998). Employing EM and pool-based active learning for text
classification. ICML (the KL-to-the-mean disagreement).
Dagan, I., Engelson, S. P. (1995). Committee-based sampling for training probabilistic
classifiers. ICML (vote entropy).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alscale.exceptions import StrategyError

__all__ = ["committee_scorer", "kl_to_consensus", "vote_entropy"]

_TINY = 1e-12


def _check(member_probs: npt.ArrayLike) -> np.ndarray:
    p = np.asarray(member_probs, dtype=np.float64)
    if p.ndim != 3 or p.shape[0] < 1:
        raise StrategyError(f"Committee probabilities must have shape (members, n, classes). Got shape {p.shape} instead.")
    return p


def vote_entropy(member_probs: npt.ArrayLike) -> np.ndarray:
    """Entropy of the members' hard votes: ``-sum_c (V_c/m) log(V_c/m)``.

    Parameters
    ----------
    member_probs : array-like of shape (m, n, c)
        Each member's class probabilities; a member votes for its argmax (ties: lowest class).

    Returns
    -------
    ndarray of shape (n,), float32, in [0, log(min(m, c))].
    """
    p = _check(member_probs)
    m, n, c = p.shape
    votes = np.argmax(p, axis=2)  # (m, n)
    counts = np.zeros((n, c), dtype=np.float64)
    np.add.at(counts, (np.broadcast_to(np.arange(n), (m, n)), votes), 1.0)
    frac = counts / m
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(frac > 0, frac * np.log(np.where(frac > 0, frac, 1.0)), 0.0)
    return (-terms.sum(axis=1)).astype(np.float32)


def kl_to_consensus(member_probs: npt.ArrayLike) -> np.ndarray:
    """Mean KL divergence of each member from the consensus (the members' mean).

    ``(1/m) sum_j sum_c p_jc log(p_jc / pbar_c)`` with ``pbar = mean_j p_j`` (0 log 0 = 0).

    Parameters
    ----------
    member_probs : array-like of shape (m, n, c)

    Returns
    -------
    ndarray of shape (n,), float32, >= 0.
    """
    p = _check(member_probs)
    mean = p.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(np.maximum(mean, _TINY))[None]), 0.0)
    return np.maximum(terms.sum(axis=2).mean(axis=0), 0.0).astype(np.float32)


def committee_scorer(func, name: str):
    """Wrap ``func(member_probs)`` as a ScoringBatch scorer that words a missing committee."""

    def score(batch) -> np.ndarray:
        if batch.member_probs is None:
            raise StrategyError(f"Strategy {name!r} needs a committee of models (repeat --model); got a single model.")
        return func(batch.member_probs)

    score.__name__ = f"score_{name.replace('-', '_')}"
    return score
