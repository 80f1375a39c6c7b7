"""Uncertainty scores from class probabilities: higher = more informative.

All functions take ``probs`` of shape (n, c), rows summing to 1, and return float32 scores of
shape (n,).  They are safe for p = 0 and cost O(n*c).

References
----------
Settles, B. (2009). Active Learning Literature Survey. University of Wisconsin-Madison, TR 1648.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alscale.rowrandom import row_uniform
from alscale.rowwise import row_max, row_top2

__all__ = ["entropy", "entropy_last_axis", "least_confidence", "margin", "random_scores"]


def entropy(probs: npt.NDArray[np.floating]) -> np.ndarray:
    """Shannon entropy ``-sum_c p_c log p_c`` of each row (0 log 0 = 0)."""
    return entropy_last_axis(np.asarray(probs, dtype=np.float32)) + np.float32(0.0)  # + 0: never -0.0


def entropy_last_axis(p: np.ndarray) -> np.ndarray:
    """``-sum_c p_c log p_c`` over the last axis of a float array, in its own dtype (0 log 0 = 0).

    Parameters
    ----------
    p : ndarray of shape (..., c), float32 or float64

    Returns
    -------
    ndarray of shape (...,)
    """
    # p * log(p + tiny) is exactly 0 where p == 0, so no mask is needed; p + tiny == p for any p
    # above 1e-30.  (np.maximum with a scalar costs 4x an addition here; it only clamps the
    # slightly negative values a model's rounding can produce.)  log2 costs 2/3 of log.
    tiny = np.finfo(p.dtype).tiny
    log2p = p + tiny
    if log2p.size and log2p.min() <= 0:
        np.maximum(log2p, tiny, out=log2p)
    np.log2(log2p, out=log2p)
    return np.einsum("...c,...c->...", p, log2p) * -np.log(p.dtype.type(2))


def margin(probs: npt.NDArray[np.floating]) -> np.ndarray:
    """One minus the gap between the two most probable classes: ``1 - (p_(1) - p_(2))``."""
    p = np.asarray(probs, dtype=np.float32)
    if p.shape[1] < 2:
        return np.ones(p.shape[0], dtype=np.float32)
    first, second = row_top2(p)
    return (1.0 - (first - second)).astype(np.float32)


def least_confidence(probs: npt.NDArray[np.floating]) -> np.ndarray:
    """One minus the highest class probability: ``1 - max_c p_c``."""
    p = np.asarray(probs, dtype=np.float32)
    return (1.0 - row_max(p)).astype(np.float32)


def random_scores(keys: np.ndarray, seed: int) -> np.ndarray:
    """Uniform scores drawn from ``(seed, row key)``: the same whatever the sharding.

    Parameters
    ----------
    keys : ndarray of shape (n,), dtype uint64
        Row keys (:func:`alscale.rowrandom.id_keys`).
    seed : int
    """
    return row_uniform(keys, seed, stream=0)
