"""Cluster-Margin selection over shards (Citovsky et al. 2021).

1. Cluster once: gather a sample of embeddings from the shards by a shard-independent rule
   (the ``sample_size`` rows with the smallest ``row_uniform(key, seed, stream)``), run FAISS
   k-means on it, and cache the centroids (in the engine's ``cache``, as
   ``<folder>/clusters-<key>-<settings>.npy``) so that a run with the same model, pool, excluded and labeled ids, seed and clustering
   settings (a rerun, or a batch size tried again) reuses them.
2. Every shard assigns its rows to the nearest centroid (FAISS ``IndexFlatL2``).  On the
   engine, steps 1-2 are split: :func:`prepare_cluster_margin` gets the centroids before the
   main scan (from the cache, or from a light pass that runs the model on the sample rows
   only), and the builders assign each batch as it streams, so a shard keeps ~33 bytes per
   row instead of its embeddings.
3. Margin candidates: the ``m = candidate_multiple * k`` rows with the smallest margin
   ``p_(1) - p_(2)``.  Each shard sends its best m scores and ids; the driver takes the m-th
   best (score, id) of the pool as the cut (ties on the id), counts each cluster's candidates
   and gives each cluster its round-robin quota; each shard then sends its best candidates of
   each cluster up to that quota (at most k rows).
4. Round-robin over the candidates' clusters, smallest cluster first (fewest candidates; ties
   by cluster index), taking the lowest-margin row of each cluster in turn, until k rows.

Score of a selected row: ``1 - (p_(1) - p_(2))`` (higher = smaller margin); the batch order
is the round-robin order, not the score order.  ``cluster`` gives each row's cluster.

Departures from the paper: FAISS k-means on a sample instead of hierarchical agglomerative
clustering with average linkage (quadratic in the rows it clusters), and the lowest-margin row of
each cluster first instead of a random one, so that the batch is deterministic.

References
----------
Citovsky, G., DeSalvo, G., Gentile, C., Karydas, L., Rajagopalan, A., Rostamizadeh, A.,
Kumar, S. (2021). Batch Active Learning at Scale. NeurIPS.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from alscale.checks import check_int
from alscale.exceptions import PoolExhaustedError, StrategyError
from alscale.reduce._params import resolve_params
from alscale.reduce.shardgroup import ColumnBuffer, Selection, ShardGroup, concat_rows
from alscale.rowrandom import row_uniform
from alscale.rowwise import row_margin

__all__ = [
    "CLUSTER_MARGIN_DEFAULTS",
    "ClusterMarginBuilder",
    "ClusterMarginShard",
    "best_rows",
    "make_cluster_margin_builder",
    "prepare_cluster_margin",
    "round_robin_order",
    "round_robin_pick",
    "round_robin_quota",
    "select_cluster_margin",
]

logger = logging.getLogger(__name__)

#: Strategy parameters of ``cluster-margin``.  ``sample_size=0``: ``max(10000, 64 * n_clusters)``.
CLUSTER_MARGIN_DEFAULTS: dict[str, Any] = {
    "n_clusters": 100,
    "candidate_multiple": 10.0,
    "sample_size": 0,
    "niter": 20,
    "embedding_dtype": "float32",
}

_SAMPLE_STREAM = 7_000_001


def round_robin_order(cluster: np.ndarray) -> np.ndarray:
    """Round-robin order over clusters, smallest first, keeping the input order within each.

    Parameters
    ----------
    cluster : ndarray of shape (m,), int
        Cluster of each candidate, candidates given best first.

    Returns
    -------
    ndarray of shape (m,), intp
        Candidate positions: the first of every cluster (clusters by size ascending, then
        index), then the second of every cluster that has one, and so on.  O(m log m).
    """
    cluster = np.asarray(cluster, dtype=np.int64)
    if len(cluster) == 0:
        return np.empty(0, np.intp)
    labels, inverse, counts = np.unique(cluster, return_inverse=True, return_counts=True)
    cluster_rank = np.empty(len(labels), np.int64)
    cluster_rank[np.lexsort((labels, counts))] = np.arange(len(labels))
    by_cluster = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    within = np.empty(len(cluster), np.int64)
    within[by_cluster] = np.arange(len(cluster)) - np.repeat(starts, counts)
    return np.lexsort((cluster_rank[inverse], within)).astype(np.intp)


def best_rows(scores: np.ndarray, ids: np.ndarray, m: int) -> np.ndarray:
    """Positions of the ``m`` best rows by (score desc, id asc), in no particular order.

    Parameters
    ----------
    scores : ndarray of shape (n,)
    ids : ndarray of shape (n,)
    m : int

    Returns
    -------
    ndarray of shape (min(m, n),), intp
        The same set as ``top_k_order(scores, ids, m)``, without ordering it: O(n), plus a sort
        of the rows tied with the m-th score.
    """
    n = len(scores)
    if m >= n:
        return np.arange(n)
    if m <= 0:
        return np.empty(0, np.intp)
    scores = np.asarray(scores, dtype=np.float64)
    kth = -np.partition(-scores, m - 1)[m - 1]
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)
    tied = tied[np.argsort(np.asarray(ids)[tied], kind="stable")[: m - len(above)]]
    return np.concatenate([above, tied])


def _ranks_within_clusters(scores: np.ndarray, ids: np.ndarray, cluster: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows grouped by cluster, best first within each (score desc, id asc), and their ranks there.

    Returns
    -------
    by_cluster : ndarray of shape (n,), intp
        Row positions in that order.
    sorted_cluster : ndarray of shape (n,), int64
        ``cluster[by_cluster]``.
    starts : ndarray of shape (n_present_clusters,)
        Where each cluster begins in that order.
    within : ndarray of shape (n,)
        Each ordered row's rank inside its cluster (0 = best).
    """
    cluster = np.asarray(cluster, dtype=np.int64)
    by_cluster = np.lexsort((np.asarray(ids), -np.asarray(scores, dtype=np.float64), cluster))
    sorted_cluster = cluster[by_cluster]
    starts = np.concatenate([[0], np.flatnonzero(sorted_cluster[1:] != sorted_cluster[:-1]) + 1])
    within = np.arange(len(cluster)) - np.repeat(starts, np.diff(np.append(starts, len(cluster))))
    return by_cluster, sorted_cluster, starts, within


def round_robin_pick(scores: np.ndarray, ids: np.ndarray, cluster: np.ndarray, k: int, sizes: np.ndarray | None = None) -> np.ndarray:
    """The first ``k`` rows of the round-robin order over clusters, without ordering all rows.

    Equal to ``order[round_robin_order(cluster[order])[:k]]`` with ``order = top_k_order(scores,
    ids, n)``: within a cluster rows go best first (score desc, id asc); the first of every
    cluster comes first (clusters by size ascending, then label), then the second, and so on.

    Parameters
    ----------
    scores, ids, cluster : ndarray of shape (n,)
    k : int
    sizes : ndarray of shape (n_clusters,), optional
        Cluster sizes that order the clusters, indexed by label (default: the rows given).  With
        the sizes of the whole candidate set, rows that hold at least each cluster's quota
        (:func:`round_robin_quota`) give the same first ``k`` as the whole set.

    Returns
    -------
    ndarray of shape (min(k, n),), intp
        Row positions in selection order.  One O(n log n) sort plus O(n).
    """
    n = len(cluster)
    if n == 0 or k <= 0:
        return np.empty(0, np.intp)
    by_cluster, sorted_cluster, starts, within = _ranks_within_clusters(scores, ids, cluster)
    counts = np.diff(np.append(starts, n))
    labels = sorted_cluster[starts]
    cluster_rank = np.empty(len(labels), np.int64)
    order_by = counts if sizes is None else np.asarray(sizes, dtype=np.int64)[labels]
    cluster_rank[np.lexsort((labels, order_by))] = np.arange(len(labels))
    position = within * len(labels) + np.repeat(cluster_rank, counts)  # unique: the round-robin place
    if k < n:
        first = np.argpartition(position, k - 1)[:k]
        first = first[np.argsort(position[first])]
    else:
        first = np.argsort(position)
    return by_cluster[first]


def round_robin_quota(sizes: np.ndarray, k: int) -> np.ndarray:
    """How many rows each cluster gives to the first ``k`` of the round-robin order.

    Parameters
    ----------
    sizes : ndarray of shape (n_clusters,), int
        Candidates per cluster.
    k : int

    Returns
    -------
    ndarray of shape (n_clusters,), int64
        Every cluster gives ``min(size, L)`` for the largest ``L`` that fits in ``k``; the rest
        goes one row each to the next clusters in visiting order (size ascending, then label).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if k >= sizes.sum():
        return sizes.copy()
    lo, hi = 0, int(sizes.max())  # sum(min(sizes, L)) <= k holds at lo, fails at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if np.minimum(sizes, mid).sum() <= k else (lo, mid)
    quota = np.minimum(sizes, lo)
    rest = k - int(quota.sum())
    longer = np.flatnonzero(sizes > lo)
    longer = longer[np.lexsort((longer, sizes[longer]))][:rest]
    quota[longer] += 1
    return quota


def _is_candidate(scores: np.ndarray, ids: np.ndarray, cut: tuple | None) -> np.ndarray | slice:
    """Rows at least as good as ``cut = (score, id)`` (score desc, id asc); all rows without one."""
    if cut is None:
        return slice(None)
    if len(scores) == 0:  # a shard with no selectable row: its placeholder ids need not compare with the cut's
        return np.empty(0, dtype=np.intp)
    score, id_ = cut
    scores = np.asarray(scores, dtype=np.float64)
    return np.flatnonzero((scores > score) | ((scores == score) & (np.asarray(ids) <= id_)))


class ClusterMarginShard:
    """One shard's rows for Cluster-Margin: embeddings, margin score, cluster after ``assign``.

    Parameters
    ----------
    ids, keys, predicted_index, confidence : ndarray of shape (n,)
    scores : ndarray of shape (n,), float32
        ``1 - margin``.
    embeddings : ndarray of shape (n, d), float32 or float16
    """

    def __init__(self, ids, keys, predicted_index, confidence, scores, embeddings, cluster=None):
        self.ids = ids
        self.keys = np.asarray(keys, dtype=np.uint64)
        self.predicted_index = predicted_index
        self.confidence = confidence
        self.scores = scores
        self.embeddings = embeddings  # None when clusters were assigned while streaming
        self.cluster = np.full(len(self.keys), -1, np.int32) if cluster is None else np.asarray(cluster, np.int32)

    def size(self) -> int:
        """Number of selectable rows on this shard."""
        return len(self.keys)

    def sample(self, seed: int, m: int) -> dict[str, np.ndarray]:
        """This shard's ``m`` rows with the smallest ``row_uniform``: ``u``, ``key``, ``embedding``."""
        if len(self.keys) == 0:
            return {}
        u = row_uniform(self.keys, seed, _SAMPLE_STREAM)
        take = np.lexsort((self.keys, u))[:m]
        return {"u": u[take], "key": self.keys[take], "embedding": self.embeddings[take].astype(np.float32)}

    def assign(self, centroids: np.ndarray) -> np.ndarray:
        """Assign every row to its nearest centroid; return rows per cluster, shape (n_clusters,)."""
        if len(self.keys):
            import faiss

            index = faiss.IndexFlatL2(centroids.shape[1])
            index.add(np.ascontiguousarray(centroids, dtype=np.float32))
            for s in range(0, len(self.keys), 65536):
                _, idx = index.search(np.ascontiguousarray(self.embeddings[s : s + 65536], dtype=np.float32), 1)
                self.cluster[s : s + 65536] = idx[:, 0]
        return np.bincount(self.cluster[self.cluster >= 0], minlength=len(centroids)).astype(np.int64)

    def best_scores(self, m: int) -> dict[str, np.ndarray]:
        """Score and id of the ``m`` lowest-margin rows here (in no particular order)."""
        rows = best_rows(self.scores, self.ids, m)
        return {"score": np.asarray(self.scores, dtype=np.float64)[rows], "id": np.asarray(self.ids)[rows]}

    def candidate_counts(self, cut: tuple | None, n_clusters: int) -> np.ndarray:
        """Candidates here per cluster (rows at least as good as ``cut``), shape (n_clusters,)."""
        return np.bincount(self.cluster[_is_candidate(self.scores, self.ids, cut)], minlength=n_clusters).astype(np.int64)

    def cluster_top(self, cut: tuple | None, quota: np.ndarray) -> dict[str, np.ndarray]:
        """Each cluster's ``quota[c]`` best candidates here, with their labels.

        Returns at most ``quota.sum()`` rows: the pool-wide best ``quota[c]`` of a cluster are
        among the union of every shard's best ``quota[c]``.
        """
        rows = np.arange(len(self.keys))[_is_candidate(self.scores, self.ids, cut)]
        if rows.size:
            by_cluster, sorted_cluster, _, within = _ranks_within_clusters(self.scores[rows], np.asarray(self.ids)[rows], self.cluster[rows])
            rows = rows[by_cluster[within < np.asarray(quota)[sorted_cluster]]]
        columns = {"score": self.scores, "id": self.ids, "key": self.keys, "cluster": self.cluster,
                   "predicted_index": self.predicted_index, "confidence": self.confidence}
        return {name: np.asarray(col)[rows] for name, col in columns.items()}


class ClusterMarginBuilder:
    """Collect one shard's embeddings and margins while it streams.

    Parameters
    ----------
    embedding_dtype : {"float32", "float16"}
        How the embeddings are kept when there are no ``centroids`` (single-process use); with
        centroids (the engine's path) each row keeps only its cluster.
    capacity : int or None
    centroids : ndarray of shape (n_clusters, d), optional
        Assign each row to its nearest centroid while streaming.
    """

    def __init__(self, embedding_dtype: str = "float32", capacity: int | None = None, centroids: np.ndarray | None = None):
        self.dtype = np.dtype(embedding_dtype)
        self.buffer = ColumnBuffer(capacity)
        self.dim: int | None = None
        self.index = None
        if centroids is not None:  # assign while streaming; keep no embeddings
            import faiss

            centroids = np.ascontiguousarray(centroids, dtype=np.float32)
            self.index = faiss.IndexFlatL2(centroids.shape[1])
            self.index.add(centroids)

    def add(self, ids, keys, probs, embeddings, selectable, labeled=None, member_probs=None) -> None:
        """Add one record batch (shapes as in :class:`alscale.reduce.badge.BadgeBuilder`)."""
        if embeddings is None:
            raise StrategyError("Strategy 'cluster-margin' needs the model's embedding output; the model gave none.")
        sel = np.asarray(selectable, dtype=bool)
        keep = slice(None) if sel.all() else np.flatnonzero(sel)  # no copy in the usual case
        probs = np.asarray(probs)[keep]
        emb = np.asarray(embeddings)[keep]
        self.dim = emb.shape[1]
        pred = np.argmax(probs, axis=1).astype(np.int32)
        self.buffer.append(
            ids=np.asarray(ids)[keep],
            keys=np.asarray(keys, dtype=np.uint64)[keep],
            predicted_index=pred,
            confidence=probs[np.arange(len(pred)), pred].astype(np.float32),
            scores=row_margin(np.asarray(probs, dtype=np.float32)),  # the margin scorer's arithmetic
            **self._embedding_or_cluster(emb),
        )

    def _embedding_or_cluster(self, emb: np.ndarray) -> dict[str, np.ndarray]:
        if self.index is None:
            return {"embeddings": emb.astype(self.dtype, copy=False)}  # the buffer copies it once
        if emb.shape[1] != self.index.d:  # FAISS would only assert it
            raise StrategyError(f"Expected embeddings as wide as the centroids ({self.index.d}). Got {emb.shape[1]}: the "
                                "centroids were made from another embedding output (a cache file edited or copied by hand?).")
        _, nearest = self.index.search(np.ascontiguousarray(emb, dtype=np.float32), 1)
        return {"cluster": nearest[:, 0].astype(np.int32)}

    def finish(self) -> ClusterMarginShard:
        """The shard state the selection driver talks to."""
        last = {"cluster": ((), np.int32)} if self.index is not None else {"embeddings": ((self.dim or 0,), self.dtype)}
        cols = self.buffer.finish(
            {
                "ids": ((), np.int64),
                "keys": ((), np.uint64),
                "predicted_index": ((), np.int32),
                "confidence": ((), np.float32),
                "scores": ((), np.float32),
                **last,
            }
        )
        return ClusterMarginShard(
            cols["ids"], cols["keys"], cols["predicted_index"], cols["confidence"], cols["scores"], cols.get("embeddings"), cols.get("cluster")
        )


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Cluster-Margin's parameters over its defaults, each checked against ``PARAM_RULES["cluster-margin"]``."""
    return resolve_params("cluster-margin", CLUSTER_MARGIN_DEFAULTS, params)


def make_cluster_margin_builder(params: Mapping[str, Any] | None = None) -> ClusterMarginBuilder:
    """Builder factory for the engine: ``make_cluster_margin_builder(strategy_params)``."""
    p = _params(params)
    return ClusterMarginBuilder(p["embedding_dtype"], p.get("capacity"), p.get("centroids"))


def _cache_variant(p: dict, seed: int) -> str:
    """The clustering settings the centroids depend on, as a short digest.

    With the cache's own key (models, pool, excluded and labeled ids) it names everything the
    centroids depend on, so a run never takes centroids that other settings made (its batch
    would then depend on what ran before it).
    """
    settings = f"{p['n_clusters']}|{_sample_size(p)}|{p['niter']}|{int(seed)}"
    return hashlib.sha256(settings.encode()).hexdigest()[:12]


def _cached_centroids(p: dict, seed: int) -> np.ndarray | None:
    cache = p.get("cache")
    cached = None if cache is None else cache.load("clusters", _cache_variant(p, seed))
    if cached is None:
        return None
    if cached.ndim == 2 and 1 <= len(cached) <= p["n_clusters"]:
        return cached.astype(np.float32)
    logger.warning("ignoring cached centroids of shape %s: they do not fit n_clusters=%d", cached.shape, p["n_clusters"])
    return None


def _sample_size(p: dict) -> int:
    return p["sample_size"] or max(10_000, 64 * p["n_clusters"])


def _fit_centroids(sample: dict[str, np.ndarray], seed: int, p: dict, m: int) -> tuple[np.ndarray, int]:
    """FAISS k-means on the ``m`` sample rows with the smallest (u, key), taken in key order."""
    take = np.lexsort((sample["key"], sample["u"]))[:m]
    take = take[np.argsort(sample["key"][take], kind="stable")]
    x = np.ascontiguousarray(sample["embedding"][take], dtype=np.float32)
    n_clusters = min(p["n_clusters"], len(x))
    import faiss

    if len(x) < 39 * n_clusters:  # FAISS's own rule of thumb; it would print a warning to stderr whatever -q says
        logger.info("clustering %d sample rows into %d clusters (fewer than 39 per cluster)", len(x), n_clusters)
    km = faiss.Kmeans(x.shape[1], n_clusters, niter=p["niter"], seed=int(seed) & 0x7FFFFFFF, verbose=False,
                      max_points_per_centroid=1 << 20, min_points_per_centroid=1)
    km.train(x)
    centroids = np.asarray(km.centroids, dtype=np.float32)
    if p.get("cache") is not None:
        p["cache"].save("clusters", _cache_variant(p, seed), centroids)
    return centroids, len(x)


def _centroids(group: ShardGroup, seed: int, p: dict, total: int) -> tuple[np.ndarray, str, int]:
    cached = _cached_centroids(p, seed)
    if cached is not None:
        return cached, "hit", 0
    m = min(total, _sample_size(p))
    centroids, used = _fit_centroids(concat_rows(group.map("sample", seed, m)), seed, p, m)
    return centroids, ("miss" if p.get("cache") is not None else "off"), used


def prepare_cluster_margin(sample_rows, k: int, seed: int, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Centroids before the main scan (the engine's path): from the cache, or from a sample.

    Parameters
    ----------
    sample_rows : callable
        ``sample_rows(m, stream) -> (rows, selectable_count)``: the ``m`` selectable rows with
        the smallest ``row_uniform(key, seed, stream)``, with ``u``, ``key``, ``embedding``.
    k, seed : int
    params : dict or None

    Returns
    -------
    dict
        ``centroids`` (n_clusters, d) float32 and ``prepared`` (cache state, sample size), to
        be merged into the builder's and the select function's parameters.
    """
    p = _params(params)
    cached = _cached_centroids(p, seed)
    if cached is not None:
        return {"centroids": cached, "prepared": {"cache": "hit", "sample_size": 0}}
    rows, total = sample_rows(_sample_size(p), _SAMPLE_STREAM)
    if total < k:
        raise PoolExhaustedError(total, k)
    centroids, used = _fit_centroids(rows, int(seed), p, min(total, _sample_size(p)))
    return {"centroids": centroids, "prepared": {"cache": "miss" if p.get("cache") is not None else "off", "sample_size": used}}


def _candidate_cut(group: ShardGroup, m: int, total: int) -> tuple | None:
    """``(score, id)`` of the m-th best row of the pool (None when every row is a candidate)."""
    if m >= total:
        return None
    parts = [part for part in group.map("best_scores", m) if len(part["score"])]
    scores = np.concatenate([part["score"] for part in parts])
    ids = np.concatenate([part["id"] for part in parts])
    best = best_rows(scores, ids, m)
    worst = best[np.lexsort((ids[best], -scores[best]))[-1]]
    return float(scores[worst]), np.asarray(ids[worst]).item()  # a Python value, whether ids are numpy or objects


def select_cluster_margin(group: ShardGroup, k: int, seed: int, params: Mapping[str, Any] | None = None) -> Selection:
    """Cluster-Margin selection of exactly ``k`` rows over the shards.

    Parameters
    ----------
    group : ShardGroup
        Shards whose states came from :class:`ClusterMarginBuilder`.
    k : int
    seed : int
    params : dict or None
        See :data:`CLUSTER_MARGIN_DEFAULTS`, plus ``cache``: where the engine keeps centroids
        between runs, an object with ``load(kind, variant)`` and ``save(kind, variant, array)``
        (:class:`alscale.arraycache.ArrayCache`), or None.

    Returns
    -------
    Selection
        ``columns`` ``id``, ``score``, ``predicted_index``, ``confidence``, ``cluster``; ``info`` has
        ``n_clusters``, ``candidates``, ``clusters_used``, ``cache`` ("hit", "miss", "off")
        and ``sample_size``.

    Raises
    ------
    PoolExhaustedError
        When fewer than ``k`` rows are selectable.

    Notes
    -----
    Cost per shard: O(n*n_clusters*d) to assign plus a sort of its candidates; the driver's
    clustering is O(sample_size*n_clusters*d*niter), skipped on a cache hit.  The driver gets
    candidate counts per cluster, then at most ``k`` rows per shard: each cluster's quota
    (:func:`round_robin_quota`) of best candidates.
    """
    k = check_int("k", k, 1)
    p = _params(params)
    total = int(sum(group.map("size")))
    if total < k:
        raise PoolExhaustedError(total, k)
    if p.get("centroids") is not None:  # prepared: the shards assigned clusters while streaming
        centroids = np.asarray(p["centroids"])
        cache, sample_size = p["prepared"]["cache"], p["prepared"]["sample_size"]
    else:
        centroids, cache, sample_size = _centroids(group, int(seed), p, total)
        group.map("assign", centroids)
    m = min(total, int(math.ceil(p["candidate_multiple"] * k)))
    cut = _candidate_cut(group, m, total)  # candidates: the m best rows of the pool
    sizes = np.sum(group.map("candidate_counts", cut, len(centroids)), axis=0)
    quota = round_robin_quota(sizes, k)  # how many each cluster gives to the batch
    parts = [part for part in group.map("cluster_top", cut, quota) if len(part["score"])]
    cand = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    order = round_robin_pick(cand["score"], cand["id"], cand["cluster"], k, sizes=sizes)
    info = {
        "n_clusters": int(len(centroids)),
        "candidates": int(sizes.sum()),
        "clusters_used": int(len(np.unique(cand["cluster"][order]))),
        "cache": cache,
        "sample_size": int(sample_size),
    }
    return Selection(
        {
            "id": cand["id"][order],
            "score": cand["score"][order].astype(np.float64),
            "predicted_index": cand["predicted_index"][order].astype(np.int32),
            "confidence": cand["confidence"][order].astype(np.float32),
            "cluster": cand["cluster"][order].astype(np.int32),
        },
        info,
    )
