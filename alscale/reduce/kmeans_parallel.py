"""k-means|| seeding (Bahmani et al. 2012) on factored gradient embeddings, over a shard group.

A row's gradient embedding is ``g = a (outer) h`` with ``a`` (C,) and ``h`` (D,); it is never
built.  Squared distances follow from the factors::

    ||g_i - g_j||^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 <a_i, a_j> <h_i, h_j>

The driver (:func:`kmeans_parallel`) keeps only candidates; every shard keeps its rows'
factors and each row's distance to the nearest candidate (:class:`GradientShard`).

1. First candidate: the row with the smallest ``row_uniform(key, seed, 0)`` (rows with a
   zero gradient only if every row of every shard has one).
2. Each round ``r``: every shard samples row ``i`` when
   ``row_uniform(key_i, seed, r) < min(1, l * d2_i / phi)`` (``phi`` = sum of ``d2`` over the
   rows that can be sampled: those with a nonzero gradient that are no near-copy of a
   candidate; ``l`` = oversampling x k); the driver keeps one of each set of near-copies
   among the drawn rows, broadcasts the new candidates, and the shards update ``d2`` and each
   row's nearest candidate.  Rows draw their own numbers from ``(seed, round, id)``, so the candidates do
   not depend on the sharding.
3. Candidate weights = pool rows nearest to each candidate; weighted k-means++ (greedy, with
   local trials as in scikit-learn) on exact factored distances picks exactly k distinct rows.

Distances inside the rounds may use a sketch (``sketch="tensor"``: ``z = (aU) * (hV) / sqrt(m)``
with Gaussian U, V, so ``E<z_i, z_j> = <a_i,a_j><h_i,h_j>``; ``sketch="kron"``: ``a (outer) Rh``
with a Gaussian R of ``m / C`` columns) searched with FAISS ``IndexFlatL2``; the final
reseeding is always exact.

Any sharding gives the same batch only if every per-row quantity is a function of the row and
the candidates alone.  BLAS and FAISS round a row's products as the shape of the call and the
row's place in it have them (on an AVX2 OpenBLAS kernel, even inside blocks of one fixed shape),
so their results only *search*: each row's nearest new candidate, compared with its nearest so
far in the same search space.  The ``d2`` that sampling and ``phi`` use is then computed for that
one candidate with elementwise operations in a fixed order (:func:`_row_dots`), which round a
row alike wherever it sits; a row identical to a candidate gets exactly 0.  ``phi`` is summed
exactly (:func:`_exact_sum`).  Near-copies (rows within ``_NEAR_COPY`` of each other, relative
to their squared norms: far above float32 rounding) are one candidate at most: a row that near
a candidate is not drawn, and of near-copies drawn together the smallest key is kept
(:func:`_without_near_copies`).  So no row finds two candidates tied within the search's
rounding, copies do not count toward k, and identical candidates do not split their weights
by rounding.  What is left to rounding: a row lying, by chance, on the bisector of two distinct
candidates to within a few ulps may be assigned either way.

References
----------
Bahmani, B., Moseley, B., Vattani, A., Kumar, R., Vassilvitskii, S. (2012). Scalable
K-Means++. PVLDB 5(7).  Arthur, D., Vassilvitskii, S. (2007). k-means++: the advantages of
careful seeding. SODA.  Ash, J. T. et al. (2020). Deep Batch Active Learning by Diverse,
Uncertain Gradient Lower Bounds. ICLR.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from alscale.exceptions import PoolExhaustedError
from alscale.reduce.shardgroup import ShardGroup, concat_rows
from alscale.rowrandom import row_uniform

__all__ = [
    "GradientShard",
    "factored_sq_distances",
    "kmeans_cost_factored",
    "kmeans_parallel",
    "kmeanspp_factored",
    "sketch_factors",
]

logger = logging.getLogger(__name__)

_CHUNK = 8192  # rows per block of the products over rows (bounded temporaries)
_PAIRWISE_MAX = 6000  # candidates up to which the final k-means++ precomputes all distances
_FILL_STREAM = 1_000_003
# Rows within _NEAR_COPY x (their two squared norms) of each other in gradient space are near-copies: one
# is a candidate at most.  Far above the search's float32 rounding (~1e-6 of them), so that no row finds two
# candidates tied by that rounding.
_NEAR_COPY = 1e-4
_PAIR_ROWS = 256  # drawn rows per block of _without_near_copies' distances (256 x drawn, float64)
_DOT_ROWS = 65536  # floats in a block of _row_dots: (_DOT_ROWS // K, K), one fixed shape for a width K
_PHI_SHIFT = 172  # every float32 is an integer multiple of 2**-149 = 2**(-172 + 23)


def factored_sq_distances(a: np.ndarray, h: np.ndarray, a_c: np.ndarray, h_c: np.ndarray) -> np.ndarray:
    """Squared distances between gradient embeddings given as factors.

    Parameters
    ----------
    a : ndarray of shape (n, C)
    h : ndarray of shape (n, D)
    a_c : ndarray of shape (m, C)
    h_c : ndarray of shape (m, D)

    Returns
    -------
    ndarray of shape (n, m), float32, clipped at 0.  Costs O(n*m*(C+D)).
    """
    a = np.asarray(a, dtype=np.float32)
    h = np.asarray(h, dtype=np.float32)
    a_c = np.asarray(a_c, dtype=np.float32)
    h_c = np.asarray(h_c, dtype=np.float32)
    sq = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", h, h)
    sq_c = np.einsum("ij,ij->i", a_c, a_c) * np.einsum("ij,ij->i", h_c, h_c)
    out = (a @ a_c.T) * (h @ h_c.T)
    out *= -2.0
    out += sq[:, None]
    out += sq_c[None, :]
    np.maximum(out, 0.0, out=out)
    return out


def sketch_factors(a: np.ndarray, h: np.ndarray, seed: int, kind: str, dim: int) -> np.ndarray:
    """Explicit low-dimensional sketch of the gradient embeddings ``a (outer) h``.

    Parameters
    ----------
    a : ndarray of shape (n, C)
    h : ndarray of shape (n, D)
    seed : int
        Seeds the projection; every shard must use the same.
    kind : {"tensor", "kron"}
    dim : int
        Sketch dimension m (``kron`` rounds it down to a multiple of C).

    Returns
    -------
    ndarray of shape (n, m), float32, C-contiguous.  Costs O(n*(C+D)*m).
    """
    n, c = a.shape
    d = h.shape[1]
    rng = np.random.default_rng([int(seed), 0xBAD6E])
    if kind == "tensor":
        u = rng.standard_normal((c, dim)).astype(np.float32)
        v = (rng.standard_normal((d, dim)) / math.sqrt(dim)).astype(np.float32)
        out = np.empty((n, dim), dtype=np.float32)
        for s in range(0, n, _CHUNK):
            out[s : s + _CHUNK] = (a[s : s + _CHUNK].astype(np.float32, copy=False) @ u) * (h[s : s + _CHUNK].astype(np.float32, copy=False) @ v)
        return out
    mh = max(1, dim // c)
    r = (rng.standard_normal((d, mh)) / math.sqrt(mh)).astype(np.float32)
    out = np.empty((n, c * mh), dtype=np.float32)
    for s in range(0, n, _CHUNK):
        ha = h[s : s + _CHUNK].astype(np.float32, copy=False) @ r
        block_a = a[s : s + _CHUNK].astype(np.float32, copy=False)
        out[s : s + _CHUNK] = (block_a[:, :, None] * ha[:, None, :]).reshape(len(ha), -1)
    return out


def _row_dots(x: np.ndarray, y: np.ndarray, x_rows: np.ndarray | None = None, y_rows: np.ndarray | None = None) -> np.ndarray:
    """``<x[x_rows[i]], y[y_rows[i]]>`` for each i, rounded as the two rows alone decide.

    BLAS rounds a row's products as the shape of the call and the row's place in it have
    them.  Here the rows are copied into blocks of one fixed shape (the last one zero-padded),
    multiplied elementwise and summed along each block's contiguous rows with ``np.add.reduce``,
    whose order of adds is fixed by the shape alone: a row's result depends on that row's
    values, and a row with itself gives exactly what :func:`_sq_norms` gives.  The blocks stay
    in a core's cache.

    Parameters
    ----------
    x : ndarray of shape (n, K)
    y : ndarray of shape (m, K)
    x_rows, y_rows : ndarray of shape (r,), int, optional
        Rows of ``x`` and ``y`` to pair; None: every row of ``x`` in order, and (for ``y``) the
        same rows as ``x``'s.

    Returns
    -------
    ndarray of shape (r,), float32
    """
    count = len(x) if x_rows is None else len(x_rows)
    out = np.empty(count, dtype=np.float32)
    step = max(1, _DOT_ROWS // max(x.shape[1], 1))
    bx = np.empty((step, x.shape[1]), dtype=np.float32)
    by = np.empty_like(bx)
    sums = np.empty(step, dtype=np.float32)
    for s in range(0, count, step):
        e = min(s + step, count)
        m = e - s
        rx = slice(s, e) if x_rows is None else x_rows[s:e]
        bx[:m] = x[rx]
        by[:m] = y[rx if y_rows is None else y_rows[s:e]]
        bx[m:] = 0.0
        by[m:] = 0.0
        np.multiply(bx, by, out=bx)
        np.add.reduce(bx, axis=1, out=sums)
        out[s:e] = sums[:m]
    return out


def _sq_norms(a: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``|a_i|^2 |h_i|^2`` per row, in float32 (:func:`_row_dots`; float16 factors are widened a block at a time)."""
    return _row_dots(a, a) * _row_dots(h, h)


def _exact_sum(x: np.ndarray) -> int | float:
    """``sum(x) * 2**_PHI_SHIFT`` as an exact integer (float32 ``x``; a float if any is not finite).

    Adding these integers over shards, then one division (:func:`_phi_total`), gives the
    correctly rounded total whatever the grouping; a float sum would change in its last bits
    with the shards' sizes.
    """
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        return float(np.sum(x, dtype=np.float64))
    mant, expo = np.frexp(x.astype(np.float64))
    # x = (mant * 2**24) * 2**(expo - 24): an integer below 2**24 times a power of two >= 2**-172
    per = np.bincount(expo + 148, weights=mant * 2.0**24)  # exact: each bin's sum stays below 2**53 (2**29 rows)
    return sum(int(v) << e for e, v in enumerate(per) if v)


def _phi_total(parts: list) -> float:
    """The shards' :func:`_exact_sum` values added, and scaled back to a float."""
    return sum(parts) / (1 << _PHI_SHIFT)


def _without_near_copies(new: dict[str, np.ndarray], space: str) -> dict[str, np.ndarray]:
    """This round's drawn rows in key order, less copies and near-copies of a drawn row of smaller key.

    Copies of a row share its ``d2``, so one round can draw several.  Two candidates within the
    search's float32 rounding of each other would leave a row near them to be assigned by that
    rounding, which follows the row's place in the call, and a copy counts toward k without
    adding coverage.  A row is a near-copy of another when their squared distance is at most
    ``_NEAR_COPY`` times the sum of their squared norms (gradient space, float64).  (A row that
    near a candidate of an earlier round is not drawn at all: :meth:`GradientShard.sample`.)

    Parameters
    ----------
    new : dict of arrays
        The drawn rows (``key``, ``a``, ``h``, and ``z`` with a sketch).
    space : {"z", "factors"}
        Where to look for close pairs first: the sketch (a linear map of the gradient
        embeddings, so near-copies are near there too; pairs found are checked on the factors),
        or the factors themselves.

    Returns
    -------
    dict of arrays, the kept rows in key order.
    """
    order = np.argsort(new["key"], kind="stable")
    new = {c: v[order] for c, v in new.items()}
    a, h = new["a"].astype(np.float64), new["h"].astype(np.float64)
    sq = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", h, h)
    drop = np.zeros(len(sq), dtype=bool)
    if space == "z":
        z = new["z"].astype(np.float64)
        sqz = np.einsum("ij,ij->i", z, z)
    for s in range(0, len(sq), _PAIR_ROWS):
        rows = slice(s, s + _PAIR_ROWS)
        if space == "z":  # a loose look in the sketch, then the factors decide
            dz = sqz[rows, None] + sqz[None, :] - 2.0 * (z[rows] @ z.T)
            i, j = np.nonzero(dz <= 100 * _NEAR_COPY * (sqz[rows, None] + sqz[None, :]))
            i += s
            d = sq[i] + sq[j] - 2.0 * np.einsum("ij,ij->i", a[i], a[j]) * np.einsum("ij,ij->i", h[i], h[j])
            near = d <= _NEAR_COPY * (sq[i] + sq[j])
            i, j = i[near], j[near]
        else:
            d = sq[rows, None] + sq[None, :] - 2.0 * (a[rows] @ a.T) * (h[rows] @ h.T)
            i, j = np.nonzero(d <= _NEAR_COPY * (sq[rows, None] + sq[None, :]))
            i += s
        for x, y in zip(i[i < j], j[i < j]):  # key order: a row goes where a kept row of smaller key is near it
            if not drop[x]:
                drop[y] = True
    keep = np.flatnonzero(~drop)
    return {c: v[keep] for c, v in new.items()}


class GradientShard:
    """One shard's rows for k-means||: factors, and each row's nearest candidate so far.

    Parameters
    ----------
    ids : ndarray of shape (n,)
    keys : ndarray of shape (n,), uint64
    predicted_index : ndarray of shape (n,), int32
    confidence : ndarray of shape (n,), float32
    a : ndarray of shape (n, C), float32 or float16
        ``p - onehot(argmax p)``.
    h : ndarray of shape (n, D), float32 or float16
        Penultimate-layer embedding.

    Notes
    -----
    Memory: ``(C + D) * itemsize`` per row for the factors, 41 bytes of bookkeeping (id, key, predicted class,
    confidence, squared norm, ``d2``, ``searched``, ``nearest``, ``chosen``), plus
    ``4 * m`` when a sketch of dimension m is prepared.
    """

    def __init__(self, ids, keys, predicted_index, confidence, a, h):
        self.ids = ids
        self.keys = np.asarray(keys, dtype=np.uint64)
        self.predicted_index = predicted_index
        self.confidence = confidence
        self.a = a
        self.h = h
        self.sq = _sq_norms(a, h) if len(keys) else np.empty(0, np.float32)
        self.z: np.ndarray | None = None
        self._reset()

    def _reset(self) -> None:
        n = len(self.keys)
        self.d2 = np.full(n, np.inf, dtype=np.float32)  # exact squared distance to the nearest candidate
        self.searched = np.full(n, np.inf, dtype=np.float32)  # the same, as the search (sketch or BLAS) found it
        self.nearest = np.full(n, -1, dtype=np.int32)
        self.chosen = np.zeros(n, dtype=bool)

    # -- methods the driver calls through ShardGroup.map -------------------------------
    def size(self) -> int:
        """Number of selectable rows on this shard."""
        return len(self.keys)

    def prepare(self, seed: int, sketch: str, sketch_dim: int) -> None:
        """Reset the round state and build the distance sketch (``sketch="none"``: exact)."""
        self._reset()
        self.z = None if sketch == "none" or len(self.keys) == 0 else sketch_factors(self.a, self.h, seed, sketch, sketch_dim)

    def first(self, seed: int) -> tuple[bool, float, int] | None:
        """``(zero_only, u, key)`` of this shard's first-center proposal, or None if the shard is empty.

        ``zero_only`` is True when every row here has a zero gradient, so that the smallest
        proposal is a row with a nonzero gradient whenever any shard has one.
        """
        if len(self.keys) == 0:
            return None
        pool = np.flatnonzero(self.sq > 0)
        zero_only = len(pool) == 0
        if zero_only:
            pool = np.arange(len(self.keys))
        u = row_uniform(self.keys[pool], seed, 0)
        best = pool[np.lexsort((self.keys[pool], u))[0]]
        return zero_only, float(u[np.searchsorted(pool, best)]), int(self.keys[best])

    def rows(self, keys: np.ndarray) -> dict[str, np.ndarray]:
        """Payload of the rows with the given keys that live here (factors, sketch, labels)."""
        return self._payload(np.flatnonzero(np.isin(self.keys, np.asarray(keys, dtype=np.uint64))))

    def update(self, centers: dict[str, np.ndarray], offset: int) -> float:
        """Fold new candidates (global indices ``offset...``) into ``d2``; return ``phi``.

        The search (FAISS on the sketch, or BLAS on the factors) finds each row's nearest new
        candidate, which replaces the row's nearest so far where the search finds it nearer;
        ``d2`` is then the exact distance to it (:meth:`_exact_d2`), which depends on the row
        and that candidate alone, whatever the shard.  (No two candidates lie within the
        search's rounding of each other: :func:`_without_near_copies`.)

        ``phi`` is ``sum(d2)`` over the rows :meth:`sample` can draw, as :func:`_exact_sum`'s
        integer (the driver adds the shards' and scales once).  Rows with a zero gradient, and
        near-copies of a candidate, are never drawn (:meth:`_drawable`), so their distances stay
        out of it: there they would only lower every other row's chance of being drawn.
        """
        n = len(self.keys)
        if n == 0:
            return 0
        searched, idx = self._search(centers)
        rows = np.flatnonzero(searched < self.searched)
        self.searched[rows] = searched[rows]
        self.nearest[rows] = (idx[rows] + offset).astype(np.int32)
        self.d2[rows] = self._exact_d2(rows, centers["a"], centers["h"], idx[rows])
        pos = np.flatnonzero(np.isin(self.keys, centers["key"]))
        if len(pos):
            order = np.argsort(centers["key"])
            where = order[np.searchsorted(centers["key"], self.keys[pos], sorter=order)]
            self.chosen[pos] = True
            self.nearest[pos] = (where + offset).astype(np.int32)
        self.d2[self.chosen] = 0.0
        self.searched[self.chosen] = 0.0
        return _exact_sum(self.d2[self._drawable()])

    def _drawable(self) -> np.ndarray:
        """Rows :meth:`sample` may draw, shape (n,), bool: a nonzero gradient, and no (near-)copy of a candidate.

        A row within ``_NEAR_COPY`` of its nearest candidate is its near-copy (see
        :func:`_without_near_copies`); a candidate itself has ``d2`` 0.
        """
        return (self.sq > 0) & (self.d2 > 2 * _NEAR_COPY * self.sq)

    def _search(self, centers: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each row's squared distance to its nearest center, as the search finds it, and that center's index.

        Returns
        -------
        distances : ndarray of shape (n,), float32
            In the sketch (FAISS ``IndexFlatL2``), or factored (BLAS) without one; their last
            bits follow the row's place in the call.
        index : ndarray of shape (n,), int64
            Into ``centers``.
        """
        if self.z is not None:
            import faiss

            index = faiss.IndexFlatL2(self.z.shape[1])
            index.add(np.ascontiguousarray(centers["z"], dtype=np.float32))
            dist, idx = index.search(self.z, 1)
            return dist[:, 0], idx[:, 0]
        n = len(self.keys)
        dist = np.empty(n, dtype=np.float32)
        idx = np.empty(n, dtype=np.int64)
        a_c = centers["a"].astype(np.float32)
        h_c = centers["h"].astype(np.float32)
        sq_c = _sq_norms(a_c, h_c)
        for s in range(0, n, _CHUNK):
            block = (self.a[s : s + _CHUNK].astype(np.float32, copy=False) @ a_c.T) * (self.h[s : s + _CHUNK].astype(np.float32, copy=False) @ h_c.T)
            block *= -2.0
            block += self.sq[s : s + _CHUNK, None]
            block += sq_c[None, :]
            j = np.argmin(block, axis=1)
            idx[s : s + _CHUNK] = j
            dist[s : s + _CHUNK] = np.maximum(block[np.arange(len(block)), j], 0.0)
        return dist, idx

    def _exact_d2(self, rows: np.ndarray, a_c: np.ndarray, h_c: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Squared distance of each of ``rows`` to center ``j`` of the same position, rounded alike on any shard.

        Elementwise products summed in a fixed order (:func:`_row_dots`), as the row norms
        are, so a row identical to its center gets exactly 0.

        Parameters
        ----------
        rows : ndarray of shape (r,), int
        a_c : ndarray of shape (m, C)
        h_c : ndarray of shape (m, D)
        j : ndarray of shape (r,), int
            Each row's center, into ``a_c`` and ``h_c``.

        Returns
        -------
        ndarray of shape (r,), float32, >= 0.  O(r * (C + D)).
        """
        cross = _row_dots(self.a, a_c, rows, j) * _row_dots(self.h, h_c, rows, j)
        d2 = self.sq[rows] + _sq_norms(a_c, h_c)[j]
        d2 -= 2.0 * cross
        return np.maximum(d2, 0.0)

    def sample(self, seed: int, round_: int, oversample: float, phi: float) -> dict[str, np.ndarray]:
        """Rows drawn this round: ``row_uniform(key, seed, round) < oversample * d2 / phi``."""
        if len(self.keys) == 0 or phi <= 0:
            return {}
        pick = self._drawable()
        if math.isfinite(oversample):  # inf: every row still far from the centers
            pick &= row_uniform(self.keys, seed, round_) * phi < oversample * self.d2.astype(np.float64)
        return self._payload(np.flatnonzero(pick))

    def weights(self, n_candidates: int) -> np.ndarray:
        """Rows nearest to each candidate, shape (n_candidates,), int64."""
        near = self.nearest[self.nearest >= 0]
        return np.bincount(near, minlength=n_candidates).astype(np.int64)

    def fill(self, seed: int, need: int, exclude: np.ndarray) -> dict[str, np.ndarray]:
        """Up to ``need`` rows not in ``exclude``, smallest ``row_uniform`` first, with ``u``."""
        free = np.flatnonzero(~np.isin(self.keys, np.asarray(exclude, dtype=np.uint64)))
        if len(free) == 0:
            return {}
        u = row_uniform(self.keys[free], seed, _FILL_STREAM)
        take = np.lexsort((self.keys[free], u))[:need]
        out = self._payload(free[take])
        out["u"] = u[take]
        return out

    def cost(self, a_c: np.ndarray, h_c: np.ndarray) -> float:
        """Exact k-means cost of this shard's rows against centers given as factors."""
        return kmeans_cost_factored(self.a, self.h, a_c, h_c)

    def _payload(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        out = {
            "key": self.keys[idx],
            "id": self.ids[idx],
            "a": self.a[idx],
            "h": self.h[idx],
            "predicted_index": self.predicted_index[idx],
            "confidence": self.confidence[idx],
        }
        if self.z is not None:
            out["z"] = self.z[idx]
        return out


def kmeans_cost_factored(a: np.ndarray, h: np.ndarray, a_c: np.ndarray, h_c: np.ndarray) -> float:
    """Sum over rows of the squared distance to the nearest center (exact, factored).

    Parameters
    ----------
    a : ndarray of shape (n, C)
    h : ndarray of shape (n, D)
    a_c : ndarray of shape (k, C)
    h_c : ndarray of shape (k, D)

    Returns
    -------
    float.  Costs O(n*k*(C+D)) in blocks of 8192 rows.
    """
    total = 0.0
    for s in range(0, len(a), _CHUNK):
        total += float(factored_sq_distances(a[s : s + _CHUNK], h[s : s + _CHUNK], a_c, h_c).min(axis=1).sum(dtype=np.float64))
    return total


def kmeanspp_factored(
    a: np.ndarray,
    h: np.ndarray,
    k: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    n_local_trials: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted k-means++ seeding on factored gradient embeddings (exact distances).

    Parameters
    ----------
    a : ndarray of shape (n, C)
    h : ndarray of shape (n, D)
    k : int
        Centers wanted; fewer come back when fewer rows have a distinct embedding.
    rng : numpy Generator
    weights : ndarray of shape (n,) or None
    n_local_trials : int or None
        Greedy trials per step (scikit-learn's rule ``2 + int(log k)`` when None); 1 gives
        plain k-means++, the exact sequential reference.

    Returns
    -------
    centers : ndarray of shape (<=k,), intp
        Row indices in selection order, all distinct.
    gains : ndarray of shape (<=k,), float64
        Squared distance of each center to the nearest earlier one when chosen (the first:
        its squared norm, as if the origin had been chosen before).

    Notes
    -----
    O(k * n_local_trials * n * (C+D)).
    """
    n = len(a)
    a = a.astype(np.float32, copy=False)
    h = h.astype(np.float32, copy=False)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    trials = (2 + int(np.log(k))) if n_local_trials is None else int(n_local_trials)
    sq = _sq_norms(a, h)

    if n <= _PAIRWISE_MAX:
        # small candidate sets: all pairwise distances at once (one BLAS call), then gathers
        full = factored_sq_distances(a, h, a, h)
        np.fill_diagonal(full, 0.0)

        def dist_to(rows: np.ndarray) -> np.ndarray:
            return full[rows].astype(np.float64)

    else:

        def dist_to(rows: np.ndarray) -> np.ndarray:
            return _dist_rows(rows)

    def _dist_rows(rows: np.ndarray) -> np.ndarray:
        block = (a[rows] @ a.T) * (h[rows] @ h.T)
        block *= -2.0
        block += sq[rows, None]
        block += sq[None, :]
        np.maximum(block, 0.0, out=block)
        block[np.arange(len(rows)), rows] = 0.0
        return block.astype(np.float64)

    positive = np.flatnonzero((sq > 0) & (w > 0))
    pool = positive if len(positive) else np.arange(n)
    p = w[pool] / w[pool].sum()
    first = int(pool[np.searchsorted(np.cumsum(p), rng.uniform(), side="right").clip(0, len(pool) - 1)])
    centers = [first]
    gains = [float(sq[first])]
    # rows with a zero gradient (at the origin) count in the cost but are never drawn
    drawable = np.where(sq > 0, w, 0.0) if len(positive) else w
    closest = dist_to(np.array([first]))[0]
    while len(centers) < k:
        cum = np.cumsum(drawable * closest)
        if not cum[-1] > 0:
            break
        draws = np.searchsorted(cum, rng.uniform(size=trials) * cum[-1], side="right").clip(0, n - 1)
        draws = np.where(drawable[draws] * closest[draws] > 0, draws, int(np.argmax(drawable * closest)))
        cand = dist_to(draws)
        np.minimum(cand, closest[None, :], out=cand)
        pots = cand @ w
        best = int(np.argmin(pots))
        centers.append(int(draws[best]))
        gains.append(float(closest[draws[best]]))
        closest = cand[best]
    return np.asarray(centers, dtype=np.intp), np.asarray(gains, dtype=np.float64)


def kmeans_parallel(
    group: ShardGroup,
    k: int,
    seed: int,
    *,
    rounds: int = 2,
    oversampling: float = 1.0,
    sketch: str = "tensor",
    sketch_dim: int = 16,
    local_trials: int | None = None,
    max_extra_rounds: int = 10,
) -> tuple[dict[str, np.ndarray], dict]:
    """Select k distinct rows by k-means|| over the shards, then weighted k-means++.

    Parameters
    ----------
    group : ShardGroup
        Shards holding :class:`GradientShard` states.
    k : int
    seed : int
    rounds : int
        Sampling rounds (more if fewer than k candidates came up, at most ``max_extra_rounds``,
        each expecting at least twice the candidates still missing).
    oversampling : float
        Expected candidates per round, as a multiple of k (``l = oversampling * k``).
    sketch : {"tensor", "kron", "none"}
    sketch_dim : int
    local_trials : int or None
        Greedy trials of the final k-means++ (None: ``2 + int(log k)``).

    Returns
    -------
    rows : dict of arrays
        The selected rows in selection order (``key``, ``id``, ``predicted_index``,
        ``confidence``, ``score``).
    info : dict
        ``rounds``, ``candidates``, ``filled``, and the ``sketch`` and ``sketch_dim`` used.

    Raises
    ------
    PoolExhaustedError
        If the shards hold fewer than k rows.
    """
    total = int(sum(group.map("size")))
    if total < k:
        raise PoolExhaustedError(total, k)
    group.map("prepare", seed, sketch, sketch_dim)
    proposals = [p for p in group.map("first", seed) if p is not None]
    first_key = min(proposals)[-1]  # a zero-gradient row only if no shard has another
    cands = concat_rows(group.map("rows", np.array([first_key], dtype=np.uint64)))
    center_cols = ("key", "a", "h", "z") if sketch != "none" else ("key", "a", "h")
    phi = _phi_total(group.map("update", {c: cands[c] for c in center_cols}, 0))
    ell = float(oversampling) * k
    if total <= 1 + rounds * ell:
        # sampling would propose about every row anyway, and with k close to the pool's size it can
        # stop barely above k, leaving the final k-means++ no choice but to take poor candidates:
        # propose every row (one round), so the final pick is exact k-means++ over the pool
        ell = math.inf
    done = 0
    while phi > 0 and (done < rounds or (len(cands["key"]) < k and done < rounds + max_extra_rounds)):
        done += 1
        # an extra round is there to reach k candidates: it expects at least twice those missing
        # (a small oversampling would otherwise leave most of the batch to the random fill)
        want = ell if done <= rounds else max(ell, 2.0 * (k - len(cands["key"])))
        new = concat_rows(group.map("sample", seed, done, want, phi))
        if not new:
            continue
        new = _without_near_copies(new, "z" if sketch != "none" else "factors")
        if not len(new["key"]):
            continue
        offset = len(cands["key"])
        cands = {c: np.concatenate([cands[c], new[c]]) for c in cands}
        phi = _phi_total(group.map("update", {c: new[c] for c in center_cols}, offset))
    n_cand = len(cands["key"])
    weights = np.sum(group.map("weights", n_cand), axis=0)
    rng = np.random.default_rng([int(seed), 0x5EED])
    pick, gains = kmeanspp_factored(cands["a"], cands["h"], min(k, n_cand), rng, weights, local_trials)
    chosen = {c: cands[c][pick] for c in ("key", "id", "predicted_index", "confidence")}
    chosen["score"] = gains
    filled = 0
    if len(pick) < k:
        # Fewer distinct gradient embeddings than k (or, despite the extra rounds, fewer
        # candidates): fill from the unselected rows, smallest row_uniform first (score 0: they
        # add no coverage).
        need = k - len(pick)
        parts = [c for c in group.map("fill", seed, need, chosen["key"]) if c]
        extra = concat_rows(parts)
        order = np.lexsort((extra["key"], extra["u"]))[:need]
        add = {c: extra[c][order] for c in chosen if c != "score"}
        chosen = {c: np.concatenate([chosen[c], add[c]]) for c in chosen if c != "score"} | {
            "score": np.concatenate([gains, np.zeros(len(order))])
        }
        filled = len(order)
        if phi > 0 and n_cand < k:  # distinct rows were left: the sampling, not the pool, ran short
            logger.warning("k-means|| proposed %d candidates for k=%d in %d rounds (oversampling %g); %d rows were filled at "
                           "random: raise 'oversampling' or 'rounds'", n_cand, k, done, oversampling, filled)
        elif phi > 0:  # enough candidates, but some lie closer together than float32 distances resolve
            logger.warning("k-means++ found %d of the %d candidates apart from one another (the others are copies of "
                           "picked rows to float32 precision); %d rows were filled at random", len(pick), n_cand, filled)
    logger.debug("k-means||: %d rounds, %d candidates, %d filled", done, n_cand, filled)
    return chosen, {"rounds": done, "candidates": n_cand, "filled": filled, "sketch": sketch, "sketch_dim": sketch_dim}
