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
from alscale.rowwise import row_sum

__all__ = ["committee_scorer", "kl_to_consensus", "vote_entropy"]


def _check(member_probs: npt.ArrayLike) -> np.ndarray:
    """The members' probabilities as a float32 or float64 array (m, n, c), as given when it is one."""
    p = np.asarray(member_probs)
    if p.dtype not in (np.float32, np.float64):
        p = p.astype(np.float64)
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

    Raises
    ------
    StrategyError
        ``member_probs`` is not of shape (m, n, c) with m >= 1.
    """
    p = _check(member_probs)
    m, n, c = p.shape
    counts = np.zeros(n * c, dtype=np.intp)  # flat (n, c): votes per row and class
    first = np.arange(n) * c
    for member in p:  # one vote per row and member, so no index repeats within one assignment
        counts[first + np.argmax(member, axis=1)] += 1
    share = np.arange(m + 1) / m  # a class with v votes adds -(v/m) log(v/m); none adds 0
    term = np.zeros(m + 1)
    term[1:] = -share[1:] * np.log(share[1:])
    return row_sum(term[counts].reshape(n, c)).astype(np.float32)


def kl_to_consensus(member_probs: npt.ArrayLike) -> np.ndarray:
    """Mean KL divergence of each member from the consensus (the members' mean).

    ``(1/m) sum_j sum_c p_jc log(p_jc / pbar_c)`` with ``pbar = mean_j p_j`` (0 log 0 = 0).

    Parameters
    ----------
    member_probs : array-like of shape (m, n, c)

    Returns
    -------
    ndarray of shape (n,), float32, >= 0.

    Raises
    ------
    StrategyError
        ``member_probs`` is not of shape (m, n, c) with m >= 1.
    """
    p = _check(member_probs)
    # Each class adds pbar * ((1 + r) log(1 + r) - r) with r = p / pbar - 1: the same sum (the
    # r terms add to 0), but every term is >= 0, so members that nearly agree keep their small
    # divergences instead of losing them to H(pbar) - mean H(p_j), a difference of near-equal numbers
    q = p.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (p - q) / q
        grow = (1 + r) * np.log1p(r)
    grow = np.where(r <= -1, 0.0, grow)  # p = 0: 0 log 0 = 0
    terms = np.where(q > 0, q * (grow - r), 0.0)  # a class no member gives any probability adds nothing
    return np.maximum(terms.sum(axis=-1).mean(axis=0), 0.0).astype(np.float32)


class committee_scorer:  # noqa: N801  (used as a function: committee_scorer(func, name)(batch))
    """Wrap ``func(member_probs)`` as a ScoringBatch scorer that words a missing committee.

    A class, not a closure, so that a strategy holding it pickles by reference: the engine sends
    each actor the strategy itself.
    """

    def __init__(self, func, name: str):
        self.func, self.name = func, name

    def __call__(self, batch) -> np.ndarray:
        if batch.member_probs is None:
            raise StrategyError(f"Strategy {self.name!r} needs a committee of models (a list of models, or repeat --model); "
                                "got a single model.")
        return self.func(batch.member_probs)
