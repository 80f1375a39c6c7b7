"""An exact, mergeable top-K accumulator (in the manner of FAISS contrib's ``ResultHeap``).

Order: score descending, then id ascending; a NaN score ranks as ``-inf``.  ``add`` and
``merge`` are associative, so any number of shards and any batch size give the same K rows in
the same order.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alscale.checks import check_int
from alscale.exceptions import ConfigError

__all__ = ["TopK", "top_k_order"]


def top_k_order(scores: npt.ArrayLike, ids: npt.ArrayLike, k: int) -> np.ndarray:
    """Indices of the ``k`` best rows, ordered by (score desc, id asc).

    Parameters
    ----------
    scores : array-like of shape (n,)
        A NaN ranks as ``-inf`` (last, ties broken on the id like any other).
    ids : array-like of shape (n,)
        Integer or string ids; unique in a well-formed pool.
    k : int
        >= 0; numpy integers are accepted.

    Returns
    -------
    ndarray of shape (min(k, n),), dtype intp

    Raises
    ------
    ConfigError
        ``k`` is not an int >= 0, or ``scores`` and ``ids`` are not of one length.

    Notes
    -----
    O(n) to find the K-th score with ``argpartition`` plus O(m log m) to order the m rows that
    reach it (m = k plus rows tied with the K-th score).
    """
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(ids)
    k = check_int("k", k, 0)
    _check_lengths(scores, ids)
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.intp)
    nan = np.isnan(scores)
    if nan.any():  # NaN compares false with everything: partition and lexsort would each put it elsewhere
        scores = np.where(nan, -np.inf, scores)
    if n > k:
        kth = -np.partition(-scores, k - 1)[k - 1]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(n)
    order = np.lexsort((ids[candidates], -scores[candidates]))
    return candidates[order[:k]]


def _check_lengths(scores: np.ndarray, ids: np.ndarray, **payload: np.ndarray) -> None:
    """Refuse arrays that are not one value per row: a mismatch would pair scores with the wrong ids."""
    shapes = {"scores": scores.shape, "ids": ids.shape, **{name: col.shape[:1] for name, col in payload.items()}}
    if scores.ndim != 1 or ids.ndim != 1 or len({shape[:1] for shape in shapes.values()}) != 1:
        raise ConfigError(f"Expected scores and ids of shape (n,) and payload columns of length n. Got shapes {shapes}.")


class TopK:
    """Keep the ``k`` highest-scoring rows seen so far, with any payload columns.

    Parameters
    ----------
    k : int
        How many rows to keep (>= 0; numpy integers are accepted).

    Raises
    ------
    ConfigError
        ``k`` is not an int >= 0.

    Examples
    --------
    >>> acc = TopK(2)
    >>> acc.add(np.array([0.1, 0.9, 0.9]), np.array([5, 7, 3]))
    >>> acc.result()["id"].tolist()
    [3, 7]
    """

    def __init__(self, k: int):
        self.k = check_int("k", k, 0)
        self.columns: dict[str, np.ndarray] | None = None
        self._pending: list[dict[str, np.ndarray]] = []  # admitted blocks not yet merged
        self._pending_rows = 0

    def __len__(self) -> int:
        self._compact()
        return 0 if self.columns is None else len(self.columns["score"])

    def threshold(self) -> float:
        """The lowest score that can still enter (``-inf`` until ``k`` rows are kept).

        A row scoring below it can never be selected, so callers may skip building its payload.
        Rows scoring exactly the threshold can still enter on the id tie-break.
        """
        if self.k == 0:
            return np.inf  # nothing can enter
        if self.columns is None or len(self.columns["score"]) < self.k:
            return -np.inf
        return float(self.columns["score"][-1])  # from the last compaction: never too high

    def add(self, scores: npt.ArrayLike, ids: npt.ArrayLike, **payload: npt.ArrayLike) -> None:
        """Offer a block of rows: ``scores`` (n,), ``ids`` (n,), payload arrays of length n.

        Raises
        ------
        ConfigError
            The arrays differ in length, or the payload columns differ from earlier blocks'.
        """
        block = {"score": np.asarray(scores, dtype=np.float64), "id": np.asarray(ids)}
        block.update({name: np.asarray(col) for name, col in payload.items()})
        _check_lengths(block["score"], block["id"], **{name: block[name] for name in payload})
        if self.columns is not None and set(block) != set(self.columns):
            raise ConfigError(f"Expected the payload columns of the earlier blocks, {sorted(self.columns)}. Got {sorted(block)}.")
        if self.k == 0:
            return
        threshold = self.threshold()
        if threshold > -np.inf:  # drop rows that cannot enter before any sorting
            keep = block["score"] >= threshold
            if not keep.all():
                block = {name: col[keep] for name, col in block.items()}
        if len(block["score"]) == 0:
            return
        self._pending.append(block)
        self._pending_rows += len(block["score"])
        if self.columns is None or self._pending_rows >= max(self.k, 4096):  # amortize the sort
            self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        parts = ([self.columns] if self.columns is not None else []) + self._pending
        if any(set(p) != set(parts[0]) for p in parts):
            raise ConfigError(f"Expected the same payload columns in every block. Got {[sorted(p) for p in parts]}.")
        block = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        keep = top_k_order(block["score"], block["id"], self.k)
        self.columns = {name: col[keep] for name, col in block.items()}
        self._pending, self._pending_rows = [], 0

    def merge(self, other: TopK) -> TopK:
        """Fold another accumulator into this one; returns ``self``."""
        other._compact()
        if other.columns is not None:
            scores, ids = other.columns["score"], other.columns["id"]
            payload = {n: c for n, c in other.columns.items() if n not in ("score", "id")}
            self.add(scores, ids, **payload)
        return self

    def result(self) -> dict[str, np.ndarray]:
        """The kept rows in rank order, as a dict of equal-length arrays (``score``, ``id``, ...)."""
        self._compact()
        if self.columns is None:
            return {"score": np.empty(0), "id": np.empty(0, dtype=np.int64)}
        return dict(self.columns)
