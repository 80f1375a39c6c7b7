"""Core-set selection: greedy k-center on embeddings, as a composable core-set over shards.

Every shard runs greedy k-center on its own selectable rows with *all* labeled rows (gathered
from every shard first) as initial centers and keeps k candidates; the driver runs greedy
k-center over the union of the candidates, again from the labeled rows, with FAISS
``IndexFlatL2`` for the nearest-center search.  Greedy k-center is a 2-approximation of the
optimal covering radius; the composed answer stays within a small factor of the
single-process greedy (tests report both radii).  The result depends on the shard layout
(deterministically); ties go to the smaller row key.

Score of a selected row: its Euclidean distance to the nearest center (labeled row or earlier
pick) when it was chosen; without labeled rows the first pick repeats the second's score.
Higher = more informative.

References
----------
Sener, O., Savarese, S. (2018). Active Learning for Convolutional Neural Networks: A Core-Set
Approach. ICLR.  Gonzalez, T. F. (1985). Clustering to minimize the maximum intercluster
distance. Theoretical Computer Science 38.  Indyk, P. et al. (2014). Composable core-sets
for diversity and coverage maximization. PODS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from alscale.checks import check_int
from alscale.exceptions import PoolExhaustedError, StrategyError
from alscale.reduce._params import resolve_params
from alscale.reduce.shardgroup import ColumnBuffer, Selection, ShardGroup, concat_rows
from alscale.rowrandom import row_uniform

__all__ = ["CORESET_DEFAULTS", "CoresetBuilder", "CoresetShard", "greedy_kcenter", "make_coreset_builder", "select_coreset"]

#: Strategy parameters of ``coreset``.  ``report_radius`` adds one pass over the pool to
#: measure the covering radius of (labeled + selected) rows (O(n*(k+labeled)*d)).
CORESET_DEFAULTS: dict[str, Any] = {"report_radius": False}


def _nearest_sq(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distance of each row of ``x`` (n, d) to its nearest row of ``centers`` (m, d)."""
    if len(centers) == 0:
        return np.full(len(x), np.inf, dtype=np.float32)
    if len(x) == 0:
        return np.empty(0, dtype=np.float32)
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centers, dtype=np.float32))
    dist, _ = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return np.maximum(dist[:, 0], 0.0)


def _recentred(x: np.ndarray, centers: np.ndarray, ratio: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``centers`` moved by the mean of ``x`` when it lies far from the rows' spread.

    Distances come from |a|^2 + |b|^2 - 2<a, b> in float32, which loses them when every row
    shares a large offset (|mean|^2 >> spread); distances do not change with the move.  Rows
    already near their mean are returned as they are (no copy).
    """
    if len(x) == 0:
        return x, centers
    mean = x.mean(axis=0, dtype=np.float64)
    spread = float(x.var(axis=0, dtype=np.float64).sum())
    if float(mean @ mean) <= ratio * max(spread, np.finfo(np.float32).tiny):
        return x, centers
    shift = mean.astype(np.float32)
    return x - shift, (np.asarray(centers, dtype=np.float32) - shift if len(centers) else centers)


def greedy_kcenter(
    x: np.ndarray, k: int, centers: np.ndarray | None = None, first: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Greedy k-center (farthest-first traversal).

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
    k : int
        Rows to pick (at most n).
    centers : ndarray of shape (m, d) or None
        Initial centers (labeled rows); when empty, ``first`` is picked first.
    first : int
        Row index of the first pick when there are no initial centers.

    Returns
    -------
    picks : ndarray of shape (min(k, n),), intp
    gains : ndarray of shape (min(k, n),), float64
        Distance of each pick to its nearest center when picked (inf for ``first``).
    radius : float
        Covering radius of the rows of ``x`` by (centers + picks).

    Notes
    -----
    O(n*m*d) for the initial centers (FAISS) plus O(k*n*d) for the picks.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    k = min(int(k), n)
    centers = centers if centers is not None else np.empty((0, x.shape[1]), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        raw_sq = np.einsum("ij,ij->i", x, x)
    if not np.isfinite(raw_sq).all():  # NaN distances would make argmax pick one row again and again
        bad = np.flatnonzero(~np.isfinite(raw_sq))
        raise StrategyError(f"Expected finite rows whose squared norms fit float32 for the k-center greedy. Got "
                            f"{len(bad)} of {n} rows that are not (row {int(bad[0])}).")
    moved, centers = _recentred(x, centers)
    sq = raw_sq if moved is x else np.einsum("ij,ij->i", moved, moved)  # rows near their mean come back as they are
    x = moved
    d2 = _nearest_sq(x, centers).astype(np.float32)
    picks, gains = [], []
    no_centers = n > 0 and bool(np.isinf(d2).all())  # only the first pick can see no centers
    dist = np.empty(n, dtype=np.float32)
    for step in range(k):
        j = int(first) if (step == 0 and no_centers) else int(np.argmax(d2))
        picks.append(j)
        gains.append(float(np.sqrt(d2[j])))
        # |x_i - x_j|^2 = |x_i|^2 + |x_j|^2 - 2 <x_i, x_j>, in place: one gemv, no temporaries
        np.dot(x, x[j], out=dist)
        dist *= -2.0
        dist += sq
        dist += sq[j]
        np.maximum(dist, 0.0, out=dist)
        np.minimum(d2, dist, out=d2)
        d2[j] = -1.0  # below every distance: never picked twice, even when all that is left are copies (distance 0)
    radius = float(np.sqrt(max(float(d2.max()), 0.0))) if n else 0.0
    return np.asarray(picks, dtype=np.intp), np.asarray(gains, dtype=np.float64), radius


class CoresetShard:
    """One shard's embeddings for core-set selection.

    Parameters
    ----------
    ids, keys, predicted_index, confidence : ndarray of shape (n,)
    embeddings : ndarray of shape (n, d), float32
        Selectable rows.
    labeled_keys : ndarray of shape (m,), uint64
    labeled_embeddings : ndarray of shape (m, d), float32
        Rows of this shard in the labeled set (initial centers everywhere).
    """

    def __init__(self, ids, keys, predicted_index, confidence, embeddings, labeled_keys, labeled_embeddings):
        self.ids = ids
        self.keys = np.asarray(keys, dtype=np.uint64)
        self.predicted_index = predicted_index
        self.confidence = confidence
        self.embeddings = embeddings
        self.labeled_keys = np.asarray(labeled_keys, dtype=np.uint64)
        self.labeled_embeddings = labeled_embeddings

    def size(self) -> int:
        """Number of selectable rows on this shard."""
        return len(self.keys)

    def dim(self) -> int:
        """Embedding dimension (0 for an empty shard)."""
        return int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else 0

    def labeled(self) -> dict[str, np.ndarray]:
        """This shard's labeled rows: ``key`` (m,), ``embedding`` (m, d)."""
        return {"key": self.labeled_keys, "embedding": self.labeled_embeddings}

    def candidates(self, k: int, seed: int, centers: np.ndarray) -> dict[str, np.ndarray]:
        """Greedy k-center over this shard's rows from ``centers``: k candidate rows."""
        if len(self.keys) == 0:
            return {}
        order = np.argsort(self.keys, kind="stable")
        u = row_uniform(self.keys[order], seed, 0)
        picks, gains, _ = greedy_kcenter(self.embeddings[order], k, centers, first=int(np.argmin(u)))
        idx = order[picks]
        return {
            "key": self.keys[idx],
            "id": self.ids[idx],
            "embedding": self.embeddings[idx],
            "predicted_index": self.predicted_index[idx],
            "confidence": self.confidence[idx],
        }

    def radius(self, centers: np.ndarray) -> float:
        """Largest distance from a row of this shard to its nearest center (0 when empty)."""
        if len(self.keys) == 0:
            return 0.0
        return float(np.sqrt(_nearest_sq(*_recentred(self.embeddings, centers)).max()))


class CoresetBuilder:
    """Collect one shard's embeddings (selectable rows) and its labeled rows while it streams.

    Parameters
    ----------
    capacity : int or None
        Expected selectable rows (preallocates).
    """

    def __init__(self, capacity: int | None = None):
        self.rows = ColumnBuffer(capacity)
        self.lab = ColumnBuffer()
        self.dim: int | None = None

    def add(self, ids, keys, probs, embeddings, selectable, labeled=None, member_probs=None) -> None:
        """Add one record batch (shapes as in :class:`alscale.reduce.badge.BadgeBuilder`)."""
        if embeddings is None:
            raise StrategyError("Strategy 'coreset' needs the model's embedding output; the model gave none.")
        emb = np.asarray(embeddings, dtype=np.float32)
        probs = np.asarray(probs)
        keys = np.asarray(keys, dtype=np.uint64)
        self.dim = emb.shape[1]
        keep = np.flatnonzero(np.asarray(selectable, dtype=bool))
        pred = np.argmax(probs[keep], axis=1).astype(np.int32)
        self.rows.append(
            ids=np.asarray(ids)[keep],
            keys=keys[keep],
            predicted_index=pred,
            confidence=probs[keep][np.arange(len(keep)), pred].astype(np.float32),
            embeddings=emb[keep],
        )
        if labeled is not None:
            lab = np.flatnonzero(np.asarray(labeled, dtype=bool))
            self.lab.append(keys=keys[lab], embeddings=emb[lab])

    def finish(self) -> CoresetShard:
        """The shard state the selection driver talks to."""
        d = self.dim or 0
        cols = self.rows.finish(
            {"ids": ((), np.int64), "keys": ((), np.uint64), "predicted_index": ((), np.int32), "confidence": ((), np.float32), "embeddings": ((d,), np.float32)}
        )
        lab = self.lab.finish({"keys": ((), np.uint64), "embeddings": ((d,), np.float32)})
        return CoresetShard(cols["ids"], cols["keys"], cols["predicted_index"], cols["confidence"], cols["embeddings"], lab["keys"], lab["embeddings"])


def make_coreset_builder(params: Mapping[str, Any] | None = None) -> CoresetBuilder:
    """Builder factory for the engine: ``make_coreset_builder(strategy_params)``."""
    p = resolve_params("coreset", CORESET_DEFAULTS, params)
    return CoresetBuilder(p.get("capacity"))


def select_coreset(group: ShardGroup, k: int, seed: int, params: Mapping[str, Any] | None = None) -> Selection:
    """Core-set selection of exactly ``k`` rows over the shards.

    Parameters
    ----------
    group : ShardGroup
        Shards whose states came from :class:`CoresetBuilder`.
    k : int
    seed : int
        Only decides the first center when there are no labeled rows.
    params : dict or None
        See :data:`CORESET_DEFAULTS`.

    Returns
    -------
    Selection
        ``columns`` ``id``, ``score``, ``predicted_index``, ``confidence``; ``info`` has ``labeled``,
        ``candidates``, ``union_radius`` (covering radius of the candidate union) and, with
        ``report_radius``, ``radius`` (covering radius of the selectable pool).

    Raises
    ------
    PoolExhaustedError
        When fewer than ``k`` rows are selectable.
    """
    k = check_int("k", k, 1)
    p = resolve_params("coreset", CORESET_DEFAULTS, params)
    total = int(sum(group.map("size")))
    if total < k:
        raise PoolExhaustedError(total, k)
    labeled = concat_rows(group.map("labeled"))
    if labeled:
        _, first_of = np.unique(labeled["key"], return_index=True)
        centers = labeled["embedding"][first_of]
    else:
        centers = np.empty((0, max(group.map("dim"))), np.float32)
    union = concat_rows(group.map("candidates", int(k), int(seed), centers))
    order = np.argsort(union["key"], kind="stable")
    union = {c: v[order] for c, v in union.items()}
    u = row_uniform(union["key"], seed, 0)
    picks, gains, union_radius = greedy_kcenter(union["embedding"], k, centers, first=int(np.argmin(u)))
    if np.isinf(gains[0]):  # no labeled rows: the first pick has no center to be far from
        gains[0] = gains[1] if len(gains) > 1 else 0.0
    info = {"labeled": int(len(centers)), "candidates": int(len(union["key"])), "union_radius": union_radius}
    if p["report_radius"]:
        all_centers = np.concatenate([centers, union["embedding"][picks]])
        info["radius"] = float(max(group.map("radius", all_centers)))
    return Selection(
        {
            "id": union["id"][picks],
            "score": gains,
            "predicted_index": union["predicted_index"][picks].astype(np.int32),
            "confidence": union["confidence"][picks].astype(np.float32),
        },
        info,
    )
