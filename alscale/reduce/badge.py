"""BADGE selection over shards: k-means|| on factored gradient embeddings, to exactly k rows.

While a shard streams, :class:`BadgeBuilder` keeps each selectable row's gradient factors
``a`` (C,) and ``h`` (D,) (see :func:`alscale.strategies.gradient_factors`) with its id, key,
predicted class and confidence; :func:`select_badge` then runs k-means|| seeding over the
shard group and weighted k-means++ over the candidates
(:func:`alscale.reduce.kmeans_parallel.kmeans_parallel`).

The builder is given the function that computes the factors, ``factors(probs, embeddings) ->
(a, h)``: the registry (:mod:`alscale.strategies`) passes
:func:`alscale.strategies.gradient_factors`, so that this module does not import
``alscale.strategies`` (scorers and reducers meet only in the registry).

Score of a selected row: its squared gradient-space distance to the nearest row selected
before it (the first row: its squared gradient norm).  Higher = more informative.

References
----------
Ash, J. T., Zhang, C., Krishnamurthy, A., Langford, J., Agarwal, A. (2020). Deep Batch
Active Learning by Diverse, Uncertain Gradient Lower Bounds. ICLR.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from alscale.checks import check_int
from alscale.exceptions import StrategyError
from alscale.reduce._params import resolve_params
from alscale.reduce.kmeans_parallel import GradientShard, kmeans_parallel
from alscale.reduce.shardgroup import ColumnBuffer, Selection, ShardGroup

__all__ = ["BADGE_DEFAULTS", "BadgeBuilder", "Factors", "make_badge_builder", "select_badge"]

#: ``factors(probs (n, C), embeddings (n, D)) -> (a (n, C), h (n, D))``, float32.
Factors = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: Strategy parameters of ``badge`` and their defaults (chosen from benchmarks/bench_diversity.py).
BADGE_DEFAULTS: dict[str, Any] = {
    "rounds": 2,
    "oversampling": 1.0,
    "sketch": "tensor",
    "sketch_dim": 16,
    "local_trials": 0,
    "factor_dtype": "float32",
}


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """BADGE's parameters over its defaults, each checked against ``PARAM_RULES["badge"]``."""
    return resolve_params("badge", BADGE_DEFAULTS, params)


_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _check_fits_float16(h: np.ndarray) -> None:
    """Refuse embeddings that float16 factors would turn into inf (and the batch into random fills)."""
    top = float(np.abs(h).max()) if h.size else 0.0
    if top > _FLOAT16_MAX:
        raise StrategyError(f"factor_dtype='float16' holds values up to {_FLOAT16_MAX:g}. Got an embedding value of {top:.3g}; "
                            "use factor_dtype=float32 (the default).")


class BadgeBuilder:
    """Collect one shard's gradient factors while it streams.

    Parameters
    ----------
    factors : callable
        ``factors(probs, embeddings) -> (a, h)``, e.g. :func:`alscale.strategies.gradient_factors`.
    factor_dtype : {"float32", "float16"}
    capacity : int or None
        Expected selectable rows (preallocates; peak memory one copy).
    """

    def __init__(self, factors: Factors, factor_dtype: str = "float32", capacity: int | None = None):
        self.factors = factors
        self.dtype = np.dtype(factor_dtype)
        self.buffer = ColumnBuffer(capacity)
        self.n_classes: int | None = None
        self.dim: int | None = None

    def add(self, ids, keys, probs, embeddings, selectable, labeled=None, member_probs=None) -> None:
        """Add one record batch; rows that are not selectable are dropped.

        Parameters
        ----------
        ids : ndarray of shape (n,)
        keys : ndarray of shape (n,), uint64
        probs : ndarray of shape (n, C)
        embeddings : ndarray of shape (n, D)
        selectable : ndarray of shape (n,), bool
        labeled : ndarray of shape (n,), bool, ignored by BADGE
        """
        if embeddings is None:
            raise StrategyError("Strategy 'badge' needs the model's embedding output; the model gave none.")
        sel = np.asarray(selectable, dtype=bool)
        keep = slice(None) if sel.all() else np.flatnonzero(sel)
        probs = np.asarray(probs)[keep]
        a, h = self.factors(probs, np.asarray(embeddings)[keep])
        if self.dtype == np.float16:
            _check_fits_float16(h)
        self.n_classes, self.dim = a.shape[1], h.shape[1]
        pred = np.argmax(probs, axis=1).astype(np.int32)
        self.buffer.append(
            ids=np.asarray(ids)[keep],
            keys=np.asarray(keys, dtype=np.uint64)[keep],
            predicted_index=pred,
            confidence=probs[np.arange(len(pred)), pred].astype(np.float32),
            a=a.astype(self.dtype, copy=False),
            h=h.astype(self.dtype, copy=False),
        )

    def finish(self) -> GradientShard:
        """The shard state the selection driver talks to."""
        c, d = self.n_classes or 0, self.dim or 0
        cols = self.buffer.finish(
            {
                "ids": ((), np.int64),
                "keys": ((), np.uint64),
                "predicted_index": ((), np.int32),
                "confidence": ((), np.float32),
                "a": ((c,), self.dtype),
                "h": ((d,), self.dtype),
            }
        )
        return GradientShard(cols["ids"], cols["keys"], cols["predicted_index"], cols["confidence"], cols["a"], cols["h"])


def make_badge_builder(factors: Factors, params: Mapping[str, Any] | None = None) -> BadgeBuilder:
    """A :class:`BadgeBuilder` for ``params`` (``factor_dtype``, and ``capacity`` from the engine)."""
    p = _params(params)
    return BadgeBuilder(factors, p["factor_dtype"], p.get("capacity"))


def select_badge(group: ShardGroup, k: int, seed: int, params: Mapping[str, Any] | None = None) -> Selection:
    """BADGE selection of exactly ``k`` distinct rows over the shards.

    Parameters
    ----------
    group : ShardGroup
        Shards whose states came from :class:`BadgeBuilder`.
    k : int
    seed : int
    params : dict or None
        See :data:`BADGE_DEFAULTS`; ``local_trials=0`` means ``2 + int(log k)``.

    Returns
    -------
    Selection
        ``columns`` ``id``, ``score``, ``predicted_index``, ``confidence``; ``info`` has ``rounds``,
        ``candidates``, ``filled``, ``sketch``, ``sketch_dim``.

    Raises
    ------
    PoolExhaustedError
        When fewer than ``k`` rows are selectable.
    """
    k = check_int("k", k, 1)
    p = _params(params)
    rows, info = kmeans_parallel(
        group,
        k,
        int(seed),
        rounds=p["rounds"],
        oversampling=p["oversampling"],
        sketch=p["sketch"],
        sketch_dim=p["sketch_dim"],
        local_trials=p["local_trials"] or None,
    )
    return Selection(
        {
            "id": rows["id"],
            "score": rows["score"].astype(np.float64),
            "predicted_index": rows["predicted_index"].astype(np.int32),
            "confidence": rows["confidence"].astype(np.float32),
        },
        info,
    )
