"""Cluster-Margin: round-robin order, shard invariance, centroid cache, large k."""

from __future__ import annotations

import os

import numpy as np
import pytest

from alscale.arraycache import ArrayCache
from alscale.exceptions import PoolExhaustedError
from alscale.reduce.cluster_margin import make_cluster_margin_builder, round_robin_order, select_cluster_margin
from alscale.reduce.shardgroup import LocalShardGroup
from alscale.rowrandom import id_keys


def _data(n=3000, d=8, c=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((12, d)) * 3
    x = (centers[rng.integers(0, 12, n)] + rng.standard_normal((n, d))).astype(np.float32)
    probs = rng.dirichlet(np.ones(c), n).astype(np.float32)
    return x, probs


def _group(x, probs, shards, selectable=None):
    n = len(x)
    ids = np.arange(n, dtype=np.int64) + 1000
    keys = id_keys(ids)
    sel = np.ones(n, bool) if selectable is None else selectable
    states = []
    for part in np.array_split(np.arange(n), shards):
        b = make_cluster_margin_builder({})
        for s in range(0, len(part), 400):
            r = part[s : s + 400]
            b.add(ids[r], keys[r], probs[r], x[r], sel[r], np.zeros(len(r), bool))
        states.append(b.finish())
    return LocalShardGroup(states), ids


def _reference(x, probs, ids, selectable, centroids, k, multiple):
    """Straightforward numpy/python Cluster-Margin from given centroids."""
    rows = np.flatnonzero(selectable)
    cluster = np.argmin(((x[rows, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    top2 = -np.sort(-probs[rows], axis=1)[:, :2]
    score = 1.0 - (top2[:, 0] - top2[:, 1])
    order = sorted(range(len(rows)), key=lambda i: (-score[i], ids[rows[i]]))[: int(multiple * k)]
    members: dict[int, list[int]] = {}
    for i in order:
        members.setdefault(int(cluster[i]), []).append(i)
    queue = sorted(members, key=lambda c: (len(members[c]), c))
    out = []
    while len(out) < k:
        for c in queue:
            if members[c] and len(out) < k:
                out.append(members[c].pop(0))
    return ids[rows[out]], cluster[out]


def test_round_robin_order_matches_loop():
    rng = np.random.default_rng(1)
    cluster = rng.integers(0, 7, 200)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(cluster):
        members.setdefault(int(c), []).append(i)
    queue = sorted(members, key=lambda c: (len(members[c]), c))
    expected = []
    while len(expected) < len(cluster):
        for c in queue:
            if members[c]:
                expected.append(members[c].pop(0))
    np.testing.assert_array_equal(round_robin_order(cluster), expected)


@pytest.mark.parametrize("string_ids", [False, True])
def test_best_rows_and_round_robin_pick_equal_the_sorted_references(string_ids):
    from alscale.reduce import top_k_order
    from alscale.reduce.cluster_margin import best_rows, round_robin_pick

    rng = np.random.default_rng(5)
    n = 3000
    scores = rng.integers(0, 40, n).astype(np.float32) / 40  # many exact ties
    ids = rng.permutation(n)
    ids = np.array([f"r{i:05d}" for i in ids]) if string_ids else ids
    cluster = rng.integers(0, 13, n).astype(np.int32)
    for m in (1, 10, 777, n, n + 5):
        np.testing.assert_array_equal(np.sort(best_rows(scores, ids, m)), np.sort(top_k_order(scores, ids, m)))
    ranked = top_k_order(scores, ids, n)
    for k in (1, 13, 500, n, n + 1):
        expected = ranked[round_robin_order(cluster[ranked])][:k]
        np.testing.assert_array_equal(round_robin_pick(scores, ids, cluster, k), expected)


def test_selection_matches_reference_for_any_shard_count_and_reuses_cache(tmp_path):
    x, probs = _data()
    selectable = np.ones(len(x), bool)
    selectable[::5] = False
    params = {"n_clusters": 10, "candidate_multiple": 4, "cache": ArrayCache(tmp_path, "m1-p1")}
    group, ids = _group(x, probs, 2, selectable)
    first = select_cluster_margin(group, 150, 3, params)
    assert first.info["cache"] == "miss"
    (cache,) = tmp_path.glob("clusters-m1-p1-*.npy")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    centroids = np.load(cache)
    ref_ids, ref_cluster = _reference(x, probs, ids, selectable, centroids, 150, 4)
    for shards in (1, 2, 3):
        group, _ = _group(x, probs, shards, selectable)
        sel = select_cluster_margin(group, 150, 3, params)
        assert sel.info["cache"] == "hit"
        np.testing.assert_array_equal(sel.columns["id"], ref_ids)
        np.testing.assert_array_equal(sel.columns["cluster"], ref_cluster)
    np.testing.assert_array_equal(first.columns["id"], ref_ids)


def test_cache_is_not_shared_by_other_clustering_settings(tmp_path):
    """Centroids cached for 4 clusters (or another seed) must not serve a run asking for 20: its batch would depend on what ran before."""
    x, probs = _data()
    cache = {"cache": ArrayCache(tmp_path, "m1-p1")}
    group, _ = _group(x, probs, 2)
    fresh = select_cluster_margin(group, 100, 3, {"n_clusters": 20, "candidate_multiple": 4})  # no cache at all
    assert select_cluster_margin(group, 100, 3, {"n_clusters": 4, "candidate_multiple": 4, **cache}).info["cache"] == "miss"
    after = select_cluster_margin(group, 100, 3, {"n_clusters": 20, "candidate_multiple": 4, **cache})
    assert after.info["cache"] == "miss" and after.info["n_clusters"] == fresh.info["n_clusters"] == 20
    np.testing.assert_array_equal(after.columns["id"], fresh.columns["id"])
    assert select_cluster_margin(group, 100, 4, {"n_clusters": 20, "candidate_multiple": 4, **cache}).info["cache"] == "miss"
    assert select_cluster_margin(group, 100, 3, {"n_clusters": 20, "candidate_multiple": 4, **cache}).info["cache"] == "hit"
    assert len(list(tmp_path.glob("clusters-m1-p1-*.npy"))) == 3


@pytest.mark.parametrize("k,multiple", [(150, 4), (40, 1), (700, 10)])
def test_candidates_cut_through_ties_like_the_reference(tmp_path, k, multiple):
    # five distinct probability rows: margins tie in large blocks, so the m-th candidate sits in a tie
    x, _ = _data(2400, seed=4)
    base = np.random.default_rng(9).dirichlet(np.ones(4), 5).astype(np.float32)
    probs = base[np.random.default_rng(10).integers(0, 5, len(x))]
    selectable = np.ones(len(x), bool)
    params = {"n_clusters": 7, "candidate_multiple": multiple, "cache": ArrayCache(tmp_path, f"ties-{k}")}
    select_cluster_margin(_group(x, probs, 1)[0], k, 1, params)
    (cache,) = tmp_path.glob(f"clusters-ties-{k}-*.npy")
    centroids = np.load(cache)
    for shards in (1, 2, 3):
        group, ids = _group(x, probs, shards)
        sel = select_cluster_margin(group, k, 1, params)
        ref_ids, ref_cluster = _reference(x, probs, ids, selectable, centroids, k, multiple)
        np.testing.assert_array_equal(sel.columns["id"], ref_ids)
        np.testing.assert_array_equal(sel.columns["cluster"], ref_cluster)
        assert sel.info["candidates"] == min(len(x), int(multiple * k))


def test_round_robin_quota_counts_the_first_k_of_the_order():
    from alscale.reduce.cluster_margin import round_robin_quota

    rng = np.random.default_rng(3)
    for _ in range(20):
        cluster = rng.integers(0, rng.integers(1, 12), rng.integers(1, 400))
        sizes = np.bincount(cluster, minlength=12)
        for k in (1, 7, len(cluster) // 2, len(cluster), len(cluster) + 3):
            first = cluster[round_robin_order(cluster)[:k]]
            np.testing.assert_array_equal(round_robin_quota(sizes, k), np.bincount(first, minlength=12))


def test_sample_and_clustering_do_not_depend_on_sharding():
    x, probs = _data(2000)
    out = [select_cluster_margin(_group(x, probs, s)[0], 50, 0, {"n_clusters": 6}) for s in (1, 3)]
    np.testing.assert_array_equal(out[0].columns["id"], out[1].columns["id"])
    assert out[0].info["cache"] == "off"


def test_batch_near_pool_size_and_errors():
    x, probs = _data(5000, d=4)
    group, ids = _group(x, probs, 2)
    sel = select_cluster_margin(group, 4800, 0, {"n_clusters": 20})
    assert len(np.unique(sel.columns["id"])) == 4800 and sel.columns["cluster"].dtype == np.int32
    with pytest.raises(PoolExhaustedError, match="5000 available / 5001 requested"):
        select_cluster_margin(group, 5001, 0)


def test_centroids_of_another_width_are_one_error():
    """FAISS only asserts d == self.d (a bare AssertionError)."""
    from alscale.exceptions import StrategyError

    x, probs = _data(200)
    builder = make_cluster_margin_builder({"centroids": np.zeros((3, x.shape[1] + 2), np.float32)})
    ids = np.arange(200)
    with pytest.raises(StrategyError, match=rf"as wide as the centroids \({x.shape[1] + 2}\). Got {x.shape[1]}"):
        builder.add(ids, id_keys(ids), probs, x, np.ones(200, bool), np.zeros(200, bool))
