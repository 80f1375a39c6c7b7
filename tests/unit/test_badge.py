"""BADGE: factored gradient embeddings and k-means|| over a LocalShardGroup."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.cluster import kmeans_plusplus

from alscale.exceptions import ConfigError, PoolExhaustedError
from alscale.reduce.badge import make_badge_builder, select_badge
from alscale.reduce.kmeans_parallel import factored_sq_distances
from alscale.reduce.shardgroup import LocalShardGroup
from alscale.rowrandom import id_keys
from alscale.strategies import get_strategy
from alscale.strategies.gradient import gradient_embeddings, gradient_factors


def _pool(n, c, d, seed=0, clusters=8):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)) * 2
    h = np.maximum(centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, d)), 0).astype(np.float32)
    logits = h @ (rng.standard_normal((d, c)) * 1.5 / np.sqrt(d))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32), h


def _group(probs, emb, shards, selectable=None, params=None, batch=97):
    n = len(probs)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    keys = id_keys(ids)
    sel = np.ones(n, bool) if selectable is None else selectable
    states = []
    for part in np.array_split(np.arange(n), shards):
        b = make_badge_builder(gradient_factors, params)
        for s in range(0, len(part), batch):
            r = part[s : s + batch]
            b.add(ids[r], keys[r], probs[r], emb[r], sel[r], np.zeros(len(r), bool))
        states.append(b.finish())
    return LocalShardGroup(states), ids


def _cost(x, centers):
    d = (x * x).sum(1)[:, None] + (centers * centers).sum(1)[None] - 2 * x @ centers.T
    return float(np.maximum(d, 0).min(1).sum())


def _exact_kmeanspp(x, k, rng):
    """Plain sequential k-means++ on explicit vectors (the reference)."""
    n = len(x)
    first = rng.integers(n)
    centers = [first]
    closest = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        j = int(np.searchsorted(np.cumsum(closest), rng.uniform() * closest.sum(), side="right"))
        centers.append(j)
        closest = np.minimum(closest, ((x - x[j]) ** 2).sum(1))
    return np.array(centers)


def test_factors_keep_predicted_class_term_and_match_explicit_distances():
    probs, emb = _pool(50, 4, 6)
    a, h = gradient_factors(probs, emb)
    pred = probs.argmax(1)
    np.testing.assert_allclose(a[np.arange(50), pred], probs[np.arange(50), pred] - 1.0, rtol=1e-6)
    g = gradient_embeddings(probs, emb)
    explicit = ((g[:, None, :] - g[None, :20, :]) ** 2).sum(-1)
    np.testing.assert_allclose(factored_sq_distances(a, h, a[:20], h[:20]), explicit, rtol=1e-4, atol=1e-4)


def test_quality_within_110_percent_of_exact_kmeanspp_median_over_5_seeds():
    probs, emb = _pool(4000, 6, 24, seed=1)
    g = gradient_embeddings(probs, emb)
    group, ids = _group(probs, emb, 2, batch=1000)
    k = 40
    ref = [_cost(g, g[_exact_kmeanspp(g, k, np.random.default_rng(s))]) for s in range(5)]
    ours = []
    for seed in range(5):
        sel = select_badge(group, k, seed)
        rows = np.searchsorted(ids, sel.columns["id"])
        ours.append(_cost(g, g[rows]))
    ratio = np.median(ours) / np.median(ref)
    assert ratio <= 1.10, f"k-means|| cost {np.median(ours):.4g} vs exact k-means++ {np.median(ref):.4g}: ratio {ratio:.3f}"


@pytest.mark.parametrize("k", [800, 900])
def test_k_close_to_the_pool_size_keeps_the_quality(k):
    """k a large share of the rows: sampling used to stop barely above k and leave far rows out (cost 20x k-means++)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1000, 5)) * rng.choice([0.5, 6.0], size=(1000, 1))  # unsure and confident rows
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    emb = rng.normal(size=(1000, 16)).astype(np.float32)
    g = gradient_embeddings(probs, emb)
    group, ids = _group(probs, emb, 2)
    for seed in range(6):
        sel = select_badge(group, k, seed)
        assert sel.info["candidates"] == 1000 and len(set(sel.columns["id"].tolist())) == k
        ours = _cost(g, g[np.searchsorted(ids, sel.columns["id"])])
        ref = _cost(g, g[_exact_kmeanspp(g, k, np.random.default_rng(seed))])
        assert ours <= 1.10 * ref, f"seed {seed}: cost {ours:.4g} vs exact k-means++ {ref:.4g}"


@pytest.mark.parametrize("params", [{}, {"sketch": "none"}, {"sketch": "kron", "sketch_dim": 24}])
def test_tiny_pool_against_sklearn_kmeans_plusplus(params):
    probs, emb = _pool(300, 3, 5, seed=2)
    g = gradient_embeddings(probs, emb)
    group, ids = _group(probs, emb, 2)
    k = 12
    ours = [_cost(g, g[np.searchsorted(ids, select_badge(group, k, s, params).columns["id"])]) for s in range(5)]
    theirs = [_cost(g, kmeans_plusplus(g.astype(np.float64), k, random_state=s)[0]) for s in range(5)]
    assert np.median(ours) <= 1.25 * np.median(theirs), (np.median(ours), np.median(theirs))


@pytest.mark.parametrize("params", [{}, {"sketch": "none"}, {"rounds": 3, "oversampling": 0.5}])
def test_same_selection_for_one_two_three_shards(params):
    probs, emb = _pool(2000, 5, 12, seed=3)
    results = []
    for shards in (1, 2, 3):
        group, _ = _group(probs, emb, shards, params=params)
        results.append(select_badge(group, 25, 11, params))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].columns["id"], other.columns["id"])
        np.testing.assert_array_equal(results[0].columns["score"], other.columns["score"])


def test_exactly_k_distinct_selectable_nonzero_rows():
    probs, emb = _pool(1500, 4, 8, seed=4)
    probs[:200] = np.eye(4, dtype=np.float32)[np.arange(200) % 4]  # confident rows: zero gradient
    selectable = np.ones(1500, bool)
    selectable[200:700] = False
    group, ids = _group(probs, emb, 3, selectable=selectable)
    sel = select_badge(group, 60, 5)
    rows = np.searchsorted(ids, sel.columns["id"])
    assert len(rows) == 60 and len(np.unique(rows)) == 60
    assert selectable[rows].all()
    assert (rows >= 200).all(), "a zero-gradient row (at the origin) was chosen while others remained"
    np.testing.assert_array_equal(sel.columns["predicted_index"], probs[rows].argmax(1))
    np.testing.assert_allclose(sel.columns["confidence"], probs[rows].max(1))
    assert sel.columns["score"].dtype == np.float64 and (sel.columns["score"] > 0).all()


@pytest.mark.parametrize("params", [{}, {"sketch": "none"}])
def test_fills_to_k_when_few_distinct_gradients(params):
    """95 rows at the origin and 5 others, k=10: the 5 first, then the zero rows with the smallest fill draws.

    The first shard holds only zero rows (for 2 and 3 shards), and they dominate the pool's cost.
    """
    from alscale.reduce.kmeans_parallel import _FILL_STREAM
    from alscale.rowrandom import row_uniform

    probs, emb = _pool(100, 3, 4, seed=5)
    probs[:95] = np.eye(3, dtype=np.float32)[0]  # 95 rows with a zero gradient
    a = probs - np.eye(3, dtype=np.float32)[probs.argmax(1)]  # the gradient is a (outer) emb
    informative = np.flatnonzero((a * a).sum(1) * (emb * emb).sum(1) > 0)
    assert informative.tolist() == [95, 96, 97, 98, 99]
    results = []
    for shards in (1, 2, 3):
        group, ids = _group(probs, emb, shards)
        sel = select_badge(group, 10, 0, params)
        # reference: every informative row, then the zero rows with the smallest (fill draw, key)
        zero_keys = id_keys(ids[:95])
        fill = ids[:95][np.lexsort((zero_keys, row_uniform(zero_keys, 0, _FILL_STREAM)))[:5]]
        assert sorted(sel.columns["id"][:5].tolist()) == sorted(ids[informative].tolist()), f"{shards} shard(s)"
        assert (sel.columns["score"][:5] > 0).all()
        np.testing.assert_array_equal(sel.columns["id"][5:], fill)
        np.testing.assert_array_equal(sel.columns["score"][5:], 0.0)
        assert sel.info["filled"] == 5
        results.append(sel)
    for other in results[1:]:  # the same batch for any shard count
        np.testing.assert_array_equal(other.columns["id"], results[0].columns["id"])
        np.testing.assert_array_equal(other.columns["score"], results[0].columns["score"])


def test_float16_factors_and_errors():
    probs, emb = _pool(500, 3, 6, seed=6)
    group, _ = _group(probs, emb, 2, params={"factor_dtype": "float16"})
    assert group.states[0].h.dtype == np.float16
    assert len(np.unique(select_badge(group, 20, 0).columns["id"])) == 20
    with pytest.raises(PoolExhaustedError, match="500 available / 501 requested"):
        select_badge(group, 501, 0)
    with pytest.raises(ConfigError, match="Did you mean 'rounds'"):
        select_badge(group, 5, 0, {"round": 3})
    assert get_strategy("badge").select is select_badge


def test_float16_factors_refuse_embeddings_beyond_float16():
    """An embedding of 3.9e5 became inf in float16: one pick scored inf, the rest filled at random."""
    from alscale.exceptions import StrategyError

    probs, emb = _pool(50, 3, 6, seed=6)
    emb[7, 2] = 3.9e5
    with pytest.raises(StrategyError, match=r"factor_dtype='float16' holds values up to 65504\. Got an embedding value of 3\.9e\+05"):
        _group(probs, emb, 1, params={"factor_dtype": "float16"})
    assert len(select_badge(_group(probs, emb, 1)[0], 10, 0).columns["id"]) == 10  # float32 takes it


def test_final_kmeanspp_pairwise_and_streamed_paths_agree(monkeypatch):
    from alscale.reduce import kmeans_parallel as kp

    probs, emb = _pool(700, 4, 8, seed=7)
    a, h = gradient_factors(probs, emb)
    w = np.arange(700) % 5 + 1.0
    fast = kp.kmeanspp_factored(a, h, 30, np.random.default_rng(1), w)
    monkeypatch.setattr(kp, "_PAIRWISE_MAX", 0)
    slow = kp.kmeanspp_factored(a, h, 30, np.random.default_rng(1), w)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-5)


def test_row_norms_of_float16_factors_are_computed_in_chunks_like_float32():
    from alscale.reduce.kmeans_parallel import _CHUNK, _sq_norms

    rng = np.random.default_rng(2)
    a = rng.standard_normal((_CHUNK * 2 + 5, 4)).astype(np.float16)
    h = rng.standard_normal((_CHUNK * 2 + 5, 6)).astype(np.float16)
    a32, h32 = a.astype(np.float32), h.astype(np.float32)
    expected = (a32 * a32).sum(1) * (h32 * h32).sum(1)
    np.testing.assert_allclose(_sq_norms(a, h), expected, rtol=1e-5)
    assert _sq_norms(a, h).dtype == np.float32


def test_a_small_oversampling_still_gets_k_candidates_and_a_shortfall_is_said(caplog):
    """oversampling=0.01 (accepted: > 0) left 43 of 50 rows to the random fill, silently."""
    from alscale.reduce.kmeans_parallel import kmeans_parallel

    probs, emb = _pool(3000, 4, 8, seed=2)
    group, _ = _group(probs, emb, 2)
    sel = select_badge(group, 50, 1, {"oversampling": 0.01, "rounds": 1})
    assert sel.info["filled"] == 0 and sel.info["candidates"] >= 50 and (sel.columns["score"] > 0).all()
    assert "filled at random" not in caplog.text
    group, _ = _group(probs, emb, 2)
    rows, info = kmeans_parallel(group, 50, 1, rounds=1, oversampling=0.01, max_extra_rounds=0)
    assert info["filled"] > 0 and (rows["score"] == 0).sum() == info["filled"]
    assert "filled at random: raise 'oversampling' or 'rounds'" in caplog.text


def _duplicate_pool(n=9000, distinct=500, c=10, d=64, seed=8):
    """``n`` rows copied from ``distinct`` feature vectors; negative, unsorted ids."""
    probs, emb = _pool(distinct, c, d, seed=seed)
    pick = np.random.default_rng(seed).integers(0, distinct, n)
    ids = -np.random.default_rng(seed + 1).permutation(n * 3)[:n].astype(np.int64) - 1
    return probs[pick], emb[pick], ids


def _cut_group(probs, emb, ids, cuts, params):
    keys = id_keys(ids)
    states = []
    for part in np.split(np.arange(len(ids)), cuts):
        b = make_badge_builder(gradient_factors, params)
        b.add(ids[part], keys[part], probs[part], emb[part], np.ones(len(part), bool), np.zeros(len(part), bool))
        states.append(b.finish())
    return LocalShardGroup(states)


@pytest.mark.parametrize("params", [{}, {"sketch": "kron"}, {"sketch": "none"}, {"sketch_dim": 48}])
def test_exact_duplicate_rows_give_the_same_batch_for_any_sharding(params):
    """Rows identical to a candidate, or to several identical candidates, got noisy BLAS distances
    whose bits followed the shard's size: nearest (so the weights) and the batch changed with the sharding."""
    probs, emb, ids = _duplicate_pool()
    n = len(ids)
    rng = np.random.default_rng(3)
    cuts = [[], [n // 2], [n // 3, 2 * n // 3], [1, 3, 10, 2000, 2001, n - 7],
            sorted(rng.choice(np.arange(1, n), 9, replace=False).tolist())]
    results, rounds = [], []
    for cut in cuts:
        group = _cut_group(probs, emb, ids, cut, params)
        results.append(select_badge(group, 40, 5, params))
        # each row's distance to its nearest candidate and that candidate, after the last round
        rounds.append([np.concatenate([getattr(st, f) for st in group.states]) for f in ("d2", "nearest")])
    for cut, other, state in zip(cuts[1:], results[1:], rounds[1:]):
        np.testing.assert_array_equal(state[0], rounds[0][0], err_msg=f"d2, cuts {cut}")
        np.testing.assert_array_equal(state[1], rounds[0][1], err_msg=f"nearest, cuts {cut}")
        np.testing.assert_array_equal(other.columns["id"], results[0].columns["id"], err_msg=f"cuts {cut}")
        np.testing.assert_array_equal(other.columns["score"], results[0].columns["score"], err_msg=f"cuts {cut}")


@pytest.mark.parametrize("params", [{}, {"sketch": "kron"}, {"sketch": "none"}])
def test_near_copies_give_the_same_batch_for_any_sharding(params):
    """100 rows, a near-copy of each (1e-5 apart) and 20 exact copies of that: BLAS's clamped 0 made a
    copy keep an older near-copy candidate or its own source by the row's place in the block (sketch none)."""
    probs, emb = _pool(100, 6, 24, seed=12)
    rng = np.random.default_rng(12)
    near_p = probs * (1 + 1e-5 * rng.standard_normal(probs.shape)).astype(np.float32)
    near_p /= near_p.sum(1, keepdims=True)
    near_e = emb * (1 + 1e-5 * rng.standard_normal(emb.shape)).astype(np.float32)
    copies = np.repeat(np.arange(100), 20)
    probs_all = np.concatenate([probs, near_p, near_p[copies]])
    emb_all = np.concatenate([emb, near_e, near_e[copies]])
    order = rng.permutation(len(probs_all))
    probs_all, emb_all = probs_all[order], emb_all[order]
    ids = np.arange(len(order), dtype=np.int64) * 3 + 1
    n = len(ids)
    cuts = [[], [n // 2], [n // 3, 2 * n // 3], [1, 3, 10, 700, 701, n - 7], sorted(rng.choice(np.arange(1, n), 9, replace=False).tolist())]
    results, states = [], []
    for cut in cuts:
        group = _cut_group(probs_all, emb_all, ids, cut, params)
        results.append(select_badge(group, 60, 4, params))
        states.append([np.concatenate([getattr(st, f) for st in group.states]) for f in ("d2", "nearest")])
    x = gradient_embeddings(probs_all, emb_all).astype(np.float64)
    picked = x[np.searchsorted(ids, results[0].columns["id"])]
    sq = (picked * picked).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * picked @ picked.T
    off = ~np.eye(len(d), dtype=bool)
    assert (d[off] > 1e-4 * (sq[:, None] + sq[None, :])[off]).all()  # no two picks are near-copies
    for cut, other, state in zip(cuts[1:], results[1:], states[1:]):
        np.testing.assert_array_equal(state[0], states[0][0], err_msg=f"d2, cuts {cut}")
        np.testing.assert_array_equal(state[1], states[0][1], err_msg=f"nearest, cuts {cut}")
        np.testing.assert_array_equal(other.columns["id"], results[0].columns["id"], err_msg=f"cuts {cut}")
        np.testing.assert_array_equal(other.columns["score"], results[0].columns["score"], err_msg=f"cuts {cut}")


@pytest.mark.parametrize("params", [{}, {"sketch": "none"}])
def test_copies_of_rows_are_one_candidate_and_the_batch_covers_the_distinct_rows_first(params):
    """3,000 rows copied from 200 vectors: one round drew several copies of a row (they share its
    d2), the copies counted toward k, no extra round ran, and the random fill took copies of picked rows."""
    probs, emb, ids = _duplicate_pool(n=3000, distinct=200, c=4, d=16, seed=11)
    x = gradient_embeddings(probs, emb).astype(np.float64)
    _, first_of, which = np.unique(x, axis=0, return_index=True, return_inverse=True)
    which = which.ravel()
    distinct = x[first_of]
    assert len(distinct) == 200
    for k in (150, 250):
        for cut in ([], [1000, 2000]):
            sel = select_badge(_cut_group(probs, emb, ids, cut, params), k, 2, params)
            rows = np.searchsorted(np.sort(ids), sel.columns["id"])
            picked = which[np.argsort(ids)[rows]]
            n_distinct = min(k, 200)
            assert len(np.unique(picked[:n_distinct])) == n_distinct, f"k={k}, cuts {cut}"  # no copy while others are left
            assert (sel.columns["score"][:n_distinct] > 0).all()
            assert sel.info["filled"] == k - n_distinct
            np.testing.assert_array_equal(sel.columns["score"][n_distinct:], 0.0)  # the fill: copies of picked rows
        if k == 150:  # as good a seeding as k-means++ on the distinct vectors (sklearn), median of 5 seeds
            ref = np.median([_cost(distinct, kmeans_plusplus(distinct, k, random_state=s)[0]) for s in range(5)])
            assert _cost(distinct, x[np.argsort(ids)[rows]]) <= 1.25 * ref


@pytest.mark.parametrize("width", [1, 10, 64, 257])
def test_a_rows_dot_product_does_not_depend_on_where_it_sits(width):
    """The exact d2 of k-means|| rests on it: BLAS gave a row other bits at other places of one block."""
    from alscale.reduce.kmeans_parallel import _DOT_ROWS, _row_dots

    rng = np.random.default_rng(width)
    step = _DOT_ROWS // width
    x = rng.standard_normal((3 * step + 11, width)).astype(np.float32)
    y = rng.standard_normal((5, width)).astype(np.float32)
    j = rng.integers(0, 5, len(x))
    full = _row_dots(x, y, np.arange(len(x)), j)
    np.testing.assert_allclose(full, np.einsum("ij,ij->i", x.astype(np.float64), y[j].astype(np.float64)), rtol=1e-4, atol=1e-4)
    for rows in ([0], [step - 1], [step, 2], np.arange(step - 3, step + 9), rng.permutation(len(x))[:step + 1]):
        rows = np.asarray(rows)
        np.testing.assert_array_equal(_row_dots(x, y, rows, j[rows]), full[rows], err_msg=f"rows {rows[:4]}...")
    np.testing.assert_array_equal(_row_dots(x, x), _row_dots(x, x[::-1].copy(), None, np.arange(len(x))[::-1]))


def test_phi_is_summed_exactly_whatever_the_grouping():
    from alscale.reduce.kmeans_parallel import _exact_sum, _phi_total

    x = (np.random.default_rng(5).lognormal(0, 6, 10001)).astype(np.float32)
    whole = _phi_total([_exact_sum(x)])
    assert whole == math.fsum(x.astype(np.float64))
    for cuts in ([1], [5000], [3, 17, 9000]):
        assert _phi_total([_exact_sum(p) for p in np.split(x, cuts)]) == whole
