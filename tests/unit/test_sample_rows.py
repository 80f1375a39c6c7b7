"""The sampling pass (Cluster-Margin's centroids): the m smallest (u, key) of a shard, exactly.

The worker runs the model only on rows below a cut on ``u`` and widens the cut when too few
selectable rows pass it; the reference sorts every selectable row of the pool in numpy.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from alscale.engine.worker import ScoringJob, ShardWorker, sample_cut
from alscale.model import inspect_model
from alscale.pool import detect_features, plan_shards, resolve_pool
from alscale.rowrandom import id_keys, row_uniform
from alscale.strategies import get_strategy
from tests.conftest import N_FEATURES, write_pool

SEED, STREAM = 3, 7


def _worker(pool_dir, model):
    resolved = resolve_pool(str(pool_dir))
    job = ScoringJob(None, detect_features(resolved.schema, "id"), "id", (inspect_model(model),), get_strategy("cluster-margin"), batch_size=64,
                     seed=SEED)
    worker = ShardWorker(job)
    seen = []
    run = worker.runner.__call__

    def counting(features):  # the rows the model ran on
        seen.append(features.shape[0])
        return run(features)

    worker.runner = type("Counting", (), {"__call__": staticmethod(counting)})()
    return worker, plan_shards(resolved, 1)[0], seen


def _reference(X, ids, model, m, excluded=()):
    keys = id_keys(ids)
    ok = np.isfinite(X).all(axis=1) & ~np.isin(ids, list(excluded))
    u = row_uniform(keys[ok], SEED, STREAM)
    take = np.lexsort((keys[ok], u))[:m]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    emb = session.run(["embedding"], {"features": X[ok][take]})[0]
    return keys[ok][take], u[take], emb, int(ok.sum())


def _check(got, count, expected):
    keys, u, emb, n_ok = expected
    np.testing.assert_array_equal(got["key"], keys)
    np.testing.assert_array_equal(got["u"], u)
    np.testing.assert_allclose(got["embedding"], emb, rtol=1e-5, atol=1e-6)
    assert count == n_ok


@pytest.fixture
def setup(tmp_path, model_factory):
    X = np.random.default_rng(0).normal(size=(6000, N_FEATURES)).astype(np.float32)
    ids = np.arange(10_000, 16_000, dtype=np.int64)
    return X, ids, model_factory(2)


def test_the_model_runs_on_little_more_than_the_sample(tmp_path, setup):
    X, ids, model = setup
    worker, shard, seen = _worker(write_pool(tmp_path / "pool", X, ids, files=2, row_group_size=700), model)
    got, count = worker.sample_rows(shard, np.empty(0, np.uint64), 100, STREAM)
    _check(got, count, _reference(X, ids, model, 100))
    assert 100 <= sum(seen) <= 100 + 5 * 10 + 1 + 40  # the cut's expected rows, plus chance


def test_a_cut_passed_by_too_few_rows_is_widened(tmp_path, setup):
    """90% of the rows excluded and a fifth of the rest invalid: the first cut holds ~20 of 100."""
    X, ids, model = setup
    X = X.copy()
    X[::50] = np.nan
    excluded = ids[np.arange(len(ids)) % 10 != 0]
    worker, shard, seen = _worker(write_pool(tmp_path / "pool", X, ids, row_group_size=500), model)
    got, count = worker.sample_rows(shard, np.sort(id_keys(excluded)), 100, STREAM)
    _check(got, count, _reference(X, ids, model, 100, excluded))
    assert sum(seen) <= 2 * (100 + 5 * 10 + 1)  # two passes: the second cut fits the 480 selectable rows


def test_fewer_selectable_rows_than_asked_gives_them_all(tmp_path, setup):
    X, ids, model = setup
    excluded = ids[40:]
    worker, shard, _ = _worker(write_pool(tmp_path / "pool", X, ids), model)
    got, count = worker.sample_rows(shard, np.sort(id_keys(excluded)), 100, STREAM)
    _check(got, count, _reference(X, ids, model, 100, excluded))
    assert len(got["key"]) == count == 40


def test_sample_cut():
    assert sample_cut(10_000, 500_000) == pytest.approx((10_000 + 500 + 1) / 500_000)
    assert sample_cut(100, 120) == 1.0 and sample_cut(5, 0) == 1.0
    # the chance that fewer than m of n uniform values fall below the cut is negligible
    n, m = 200_000, 400
    counts = (np.random.default_rng(1).random((50, n)) < sample_cut(m, n)).sum(axis=1)
    assert counts.min() >= m
