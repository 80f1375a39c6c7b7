"""The initial labeled set (the cold start): random, stratified over k-means clusters, or
spread over the values of a hint column.

Every method draws from ``(seed, id)`` (:func:`alscale.rowrandom.row_uniform`), so the choice
does not depend on the pool's file order.

* :func:`seed_random` - the ``n`` candidates with the smallest draws.
* :func:`seed_kmeans` - k-means on (a random subsample of) the features or embeddings; every
  cluster gets one pick, the rest of ``n`` is shared in proportion to cluster sizes (largest
  remainder), and each cluster
  gives its rows with the smallest draws.  Covers the modes of the data when a random sample
  of a few dozen would miss small ones.
* :func:`seed_by_hint` - an equal share per value of a hint column (weak label, source), capped
  by what each value has, the leftover given to values with rows to spare.
"""

from __future__ import annotations

import numpy as np

from alscale.checks import check_int
from alscale.exceptions import ConfigError, PoolExhaustedError
from alscale.loop.evalset import SEED_STREAM, reserve_random
from alscale.rowrandom import id_keys, row_uniform

__all__ = ["INITIAL_METHODS", "allocate", "seed_by_hint", "seed_kmeans", "seed_random"]

#: How round 0 may pick the seed set: :func:`seed_random`, :func:`seed_kmeans`, :func:`seed_by_hint`.
INITIAL_METHODS = ("random", "kmeans", "hint")


def _check(n: int, n_candidates: int) -> None:
    n = check_int("initial", n, 1)  # the seed set's size
    if n > n_candidates:
        raise PoolExhaustedError(n_candidates, n)


def seed_random(ids: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """A uniform random initial set; ids of shape (N,) -> (n,)."""
    _check(n, len(ids))
    return reserve_random(np.asarray(ids), n, seed=seed, stream=SEED_STREAM)


def allocate(sizes: np.ndarray, n: int, *, proportional: bool = True) -> np.ndarray:
    """Share ``n`` picks across groups of the given ``sizes`` without exceeding any.

    Parameters
    ----------
    sizes : ndarray of shape (g,)
    n : int, ``<= sizes.sum()``
    proportional : bool
        Proportional to size (largest remainder) or equal shares (water-filling).

    Returns
    -------
    ndarray of shape (g,), int64, summing to n
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if n <= 0:
        return np.zeros_like(sizes)
    if proportional:
        raw = n * sizes / sizes.sum()
        take = np.minimum(np.floor(raw).astype(np.int64), sizes)
        order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    else:
        take = np.zeros_like(sizes)
        order = np.arange(len(sizes))
    while take.sum() < n:  # hand out the rest one at a time where there is room
        room = take < sizes
        if proportional:
            for g in order:
                if take.sum() == n:
                    break
                if room[g]:
                    take[g] += 1
        else:
            level = take[room].min()
            for g in order:
                if take.sum() == n:
                    break
                if room[g] and take[g] == level:
                    take[g] += 1
    return take


def _pick_per_group(ids: np.ndarray, groups: np.ndarray, take: np.ndarray, seed: int) -> np.ndarray:
    draws = row_uniform(id_keys(ids), seed, SEED_STREAM)
    chosen = []
    for g, t in enumerate(take):
        if t:
            members = np.flatnonzero(groups == g)
            chosen.append(members[np.argsort(draws[members], kind="stable")[:t]])
    picked = np.concatenate(chosen) if chosen else np.array([], dtype=np.int64)
    return ids[np.sort(picked)]


def seed_kmeans(ids: np.ndarray, X: np.ndarray, n: int, *, seed: int = 0, n_clusters: int | None = None) -> np.ndarray:
    """An initial set stratified over k-means clusters.

    Parameters
    ----------
    ids : ndarray of shape (N,)
    X : ndarray of shape (N, d)
        Features or embeddings of the candidates (pass a random subsample for huge pools).
    n : int
    seed : int
    n_clusters : int, optional
        Defaults to ``min(n, 10)``.

    Returns
    -------
    ndarray of shape (n,)
        O(N*d*k*iterations) for the clustering.
    """
    ids = np.asarray(ids)
    _check(n, len(ids))
    k = int(min(n, 10) if n_clusters is None else n_clusters)
    if k < 1 or k > len(ids):
        raise ConfigError(f"The number of clusters must be in [1, {len(ids)}]. Got {k} instead.")
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(np.asarray(X, dtype=np.float64))
    sizes = np.bincount(labels, minlength=k)
    base = np.minimum(sizes, 1) if n >= k else np.zeros_like(sizes)  # every cluster once, then by size
    take = base + allocate(sizes - base, n - int(base.sum()), proportional=True)
    return _pick_per_group(ids, labels, take, seed)


def seed_by_hint(ids: np.ndarray, hints, n: int, *, seed: int = 0) -> np.ndarray:
    """An initial set with an equal share for every value of a hint column.

    Parameters
    ----------
    ids : ndarray of shape (N,)
    hints : sequence of length N
        A weak label, source, or any grouping value per candidate (None is its own value).
    n : int
    seed : int

    Returns
    -------
    ndarray of shape (n,)
    """
    ids = np.asarray(ids)
    _check(n, len(ids))
    values = np.array(["<null>" if h is None else str(h) for h in hints], dtype=object)
    _, groups = np.unique(values, return_inverse=True)
    sizes = np.bincount(groups)
    return _pick_per_group(ids, groups, allocate(sizes, n, proportional=False), seed)
