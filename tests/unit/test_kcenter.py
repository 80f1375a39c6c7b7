"""Core-set: greedy k-center, composable over shards, labeled rows as initial centers."""

from __future__ import annotations

import numpy as np
import pytest

from alscale.exceptions import PoolExhaustedError, StrategyError
from alscale.reduce.kcenter import greedy_kcenter, make_coreset_builder, select_coreset
from alscale.reduce.shardgroup import LocalShardGroup
from alscale.rowrandom import id_keys


def _data(n=1200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((15, d)) * 4
    x = (centers[rng.integers(0, 15, n)] + rng.standard_normal((n, d))).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), n).astype(np.float32)
    return x, probs


def _group(x, probs, shards, labeled=None, selectable=None):
    n = len(x)
    ids = np.arange(n, dtype=np.int64)
    keys = id_keys(ids)
    lab = np.zeros(n, bool) if labeled is None else labeled
    sel = ~lab if selectable is None else selectable
    states = []
    for part in np.array_split(np.arange(n), shards):
        b = make_coreset_builder({})
        for s in range(0, len(part), 250):
            r = part[s : s + 250]
            b.add(ids[r], keys[r], probs[r], x[r], sel[r], lab[r])
        states.append(b.finish())
    return LocalShardGroup(states)


def _reference_greedy(x, k, centers):
    """Farthest-first traversal, written out plainly (single process)."""
    d = np.min(((x[:, None, :] - centers[None]) ** 2).sum(-1), axis=1) if len(centers) else np.full(len(x), np.inf)
    picks = []
    for _ in range(k):
        j = int(np.argmax(d)) if np.isfinite(d).any() else 0
        picks.append(j)
        d = np.minimum(d, ((x - x[j]) ** 2).sum(1))
    return np.array(picks), float(np.sqrt(d.max()))


def _radius(x, centers):
    return float(np.sqrt(np.min(((x[:, None, :] - centers[None]) ** 2).sum(-1), axis=1).max()))


def test_greedy_kcenter_matches_plain_reference():
    x, _ = _data(400)
    centers = x[:5]
    picks, gains, radius = greedy_kcenter(x, 30, centers)
    ref, ref_radius = _reference_greedy(x, 30, centers)
    np.testing.assert_array_equal(picks, ref)
    assert radius == pytest.approx(ref_radius, rel=1e-4)
    assert (np.diff(gains) <= 1e-4).all()  # farthest-first gains never grow


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_fewer_distinct_rows_than_k_still_gives_k_distinct_ids(shards):
    """60 rows repeating 3 vectors, k=6: once every distance is 0 the rest are the remaining rows in key order, never a row twice."""
    base = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    x = base[np.arange(60) % 3]
    probs = np.full((60, 3), 1 / 3, np.float32)
    sel = select_coreset(_group(x, probs, shards), 6, 0)
    assert len(set(sel.columns["id"].tolist())) == 6
    assert len({tuple(x[i]) for i in sel.columns["id"][:3]}) == 3  # the three distinct vectors come first
    np.testing.assert_array_equal(sel.columns["score"][3:], 0.0)
    ids = np.arange(60)
    rest = np.setdiff1d(ids, sel.columns["id"][:3])
    np.testing.assert_array_equal(sel.columns["id"][3:], rest[np.argsort(id_keys(rest), kind="stable")][:3])  # the remaining rows in key order
    picks, gains, radius = greedy_kcenter(x, 60, np.empty((0, 4), np.float32))
    assert sorted(picks.tolist()) == list(range(60)) and radius == 0.0


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_composable_radius_close_to_single_process_greedy(shards):
    x, probs = _data()
    labeled = np.zeros(len(x), bool)
    labeled[np.arange(0, len(x), 97)] = True
    k = 40
    sel = select_coreset(_group(x, probs, shards, labeled), k, 0, {"report_radius": True})
    rows = sel.columns["id"].astype(int)
    assert len(np.unique(rows)) == k and not labeled[rows].any()
    pool = x[~labeled]
    ours = _radius(pool, np.concatenate([x[labeled], x[rows]]))
    ref_picks, _ = _reference_greedy(pool, k, x[labeled])
    ref = _radius(pool, np.concatenate([x[labeled], pool[ref_picks]]))
    assert sel.info["radius"] == pytest.approx(ours, rel=1e-4)
    # greedy is a 2-approximation, so the composed radius is within 2x of single-process greedy
    assert ours <= 2.0 * ref, f"composable radius {ours:.3f} vs single-process greedy {ref:.3f}"
    if shards == 1:
        assert ours == pytest.approx(ref, rel=1e-5)


def test_labeled_rows_in_any_shard_are_centers_everywhere():
    x, probs = _data(600)
    labeled = np.zeros(600, bool)
    labeled[:300] = True  # all in the first of two shards
    sel = select_coreset(_group(x, probs, 2, labeled), 10, 0)
    ref_picks, _ = _reference_greedy(x[300:], 1, x[:300])
    # the first pick is the pool row farthest from every labeled row
    assert sel.columns["id"][0] == 300 + ref_picks[0]
    d = np.sqrt(((x[300 + ref_picks[0]] - x[:300]) ** 2).sum(1).min())
    assert sel.columns["score"][0] == pytest.approx(d, rel=1e-4)
    assert sel.info["labeled"] == 300


def test_errors():
    x, probs = _data(50)
    with pytest.raises(PoolExhaustedError, match="50 available / 51 requested"):
        select_coreset(_group(x, probs, 2), 51, 0)
    with pytest.raises(StrategyError, match="embedding"):
        make_coreset_builder({}).add(np.arange(2), id_keys(np.arange(2)), probs[:2], None, np.ones(2, bool), np.zeros(2, bool))


def test_rows_whose_distances_overflow_float32_are_refused():
    """A NaN distance is never below the picked-row marker: argmax chose the same row k times."""
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    x[7] = 1e20
    with pytest.raises(StrategyError, match=r"^Expected finite rows whose squared norms fit float32 .* Got 1 of 50 rows that are not \(row 7\)\.$"):
        greedy_kcenter(x, 5)
    x[7] = np.nan
    with pytest.raises(StrategyError, match=r"Got 1 of 50 rows that are not \(row 7\)"):
        greedy_kcenter(x, 5)


def test_string_ids_longer_in_later_batches_come_back_whole():
    """The engine preallocates each shard's columns from its first batch; ids grow longer later (row-9, row-10)."""
    x, probs = _data(n=200)
    ids = np.array([f"row-{i}" for i in range(200)])
    keys = id_keys(ids)
    b = make_coreset_builder({"capacity": 200})
    lab = np.zeros(200, bool)
    for s in range(0, 200, 8):
        r = slice(s, s + 8)
        b.add(np.array(ids[r].tolist()), keys[r], probs[r], x[r], ~lab[r], lab[r])  # each batch its own string width
    picked = select_coreset(LocalShardGroup([b.finish()]), 20, 0).columns["id"].tolist()
    assert len(set(picked)) == 20 and set(picked) <= set(ids.tolist())


def test_rows_sharing_a_large_offset_are_picked_as_without_it():
    """float32 |a|^2 + |b|^2 - 2<a, b> loses distances of 0.05-spread rows 100 away from the origin."""
    rng = np.random.default_rng(1)
    x = (rng.normal(scale=0.05, size=(1500, 64)) + 100.0).astype(np.float32)
    picks, _, radius = greedy_kcenter(x, 60, x[:10])
    # reference: the same float32 rows, farthest-first in float64
    ref_picks, ref_radius = _reference_greedy(x.astype(np.float64), 60, x[:10].astype(np.float64))
    assert len(set(picks.tolist()) & set(ref_picks.tolist())) >= 57
    assert radius == pytest.approx(ref_radius, rel=1e-3)
