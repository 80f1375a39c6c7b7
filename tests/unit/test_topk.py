"""The exact top-K accumulator: any split, any order, same answer as one sort."""

from __future__ import annotations

import numpy as np
import pytest

from alscale.reduce import TopK, top_k_order


def _reference(scores, ids, k):
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    return [ids[i] for i in order[:k]]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("pieces", [1, 2, 3, 7])
def test_merge_of_any_split_equals_sort(seed, pieces):
    rng = np.random.default_rng(seed)
    n, k = 500, 37
    scores = rng.integers(0, 20, size=n).astype(np.float64)  # many ties
    ids = rng.permutation(10_000)[:n]
    cuts = np.sort(rng.choice(np.arange(1, n), size=pieces - 1, replace=False)) if pieces > 1 else []
    parts = []
    for lo, hi in zip([0, *cuts], [*cuts, n]):
        acc = TopK(k)
        for b in range(lo, hi, 13):
            e = min(hi, b + 13)
            acc.add(scores[b:e], ids[b:e], tag=ids[b:e] * 2)
        parts.append(acc)
    merged = TopK(k)
    for p in parts[::-1]:
        merged.merge(p)
    res = merged.result()
    assert res["id"].tolist() == _reference(scores.tolist(), ids.tolist(), k)
    np.testing.assert_array_equal(res["tag"], res["id"] * 2)


def test_ties_break_on_string_ids():
    scores = np.array([1.0, 1.0, 1.0, 0.5])
    ids = np.array(["b", "c", "a", "z"])
    assert ids[top_k_order(scores, ids, 3)].tolist() == ["a", "b", "c"]


def test_k_larger_than_rows_keeps_all_in_order():
    acc = TopK(10)
    acc.add([0.2, 0.9], [1, 2])
    assert acc.result()["id"].tolist() == [2, 1]
    assert len(acc) == 2


@pytest.mark.parametrize("k", [0, 1, 4, 9, 10, 12])
def test_any_k_from_zero_to_past_the_rows(k):
    """k = 0 keeps nothing however many blocks come; k = n and k > n keep every row, in order."""
    rng = np.random.default_rng(k)
    scores, ids = rng.integers(0, 3, size=10).astype(np.float64), rng.permutation(100)[:10]
    acc = TopK(k)
    for b in range(0, 10, 3):
        acc.add(scores[b:b + 3], ids[b:b + 3])
    assert acc.result()["id"].tolist() == _reference(scores.tolist(), ids.tolist(), k)
    assert len(acc) == min(k, 10) and acc.threshold() == (np.inf if k == 0 else -np.inf if k > 10 else acc.result()["score"][-1])


@pytest.mark.parametrize("k", range(0, 8))
def test_nan_scores_rank_as_minus_infinity(k):
    """Whatever k, NaN rows come last, among -inf rows by id: one sort, the accumulator and the reference agree."""
    scores = np.array([np.nan, 0.5, -np.inf, np.nan, 0.4, 0.5, -np.inf])
    ids = np.array([6, 5, 0, 2, 3, 1, 4])
    expected = _reference(np.where(np.isnan(scores), -np.inf, scores).tolist(), ids.tolist(), k)
    assert ids[top_k_order(scores, ids, k)].tolist() == expected
    acc = TopK(k)
    for b in range(0, 7, 2):
        acc.add(scores[b:b + 2], ids[b:b + 2])
    assert acc.result()["id"].tolist() == expected
