"""Diversity strategies survive a shard actor killed mid-selection, and resume after the
driver is killed: the batch is identical to an undisturbed run.

The faults are real (SIGKILL of the actor's or the driver's process); only the moment of the
actor kill is chosen by wrapping the shard group's ``map`` (between two k-means|| rounds).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

import alscale
from alscale.engine import raygroup
from tests.conftest import tied_features, write_pool

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    X = np.random.default_rng(5).normal(size=(3000, 8)).astype(np.float32) * 2
    return write_pool(tmp_path_factory.mktemp("divfault") / "pool", X, files=2, row_group_size=500)


def test_badge_survives_an_actor_killed_between_rounds(pool, model_path, monkeypatch):
    reference = alscale.select(pool, model_path, strategy="badge", k=40, actors=2, seed=4)
    original = raygroup.RayShardGroup.map
    killed = []

    def map_then_kill(self, method, *args, **kwargs):
        if len(self.history) == 2 and not killed:  # after two calls: state built and updated
            actor = self.placements[0][0]
            pid = ray.get(actor.pid.remote())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            time.sleep(0.5)
        return original(self, method, *args, **kwargs)

    monkeypatch.setattr(raygroup.RayShardGroup, "map", map_then_kill)
    disturbed = alscale.select(pool, model_path, strategy="badge", k=40, actors=2, seed=4)
    assert killed, "the fault was never injected"
    assert disturbed.data["strategy"]["info"]["shard_states_rebuilt"] >= 1
    assert disturbed.ids == reference.ids
    np.testing.assert_array_equal(np.asarray(disturbed.batch.column("score")), np.asarray(reference.batch.column("score")))


DRIVER = """
import sys, alscale
alscale.select(sys.argv[1], sys.argv[2], out=sys.argv[3], strategy="badge", k=25, actors=2, seed=1, batch_size=8)
"""


@pytest.mark.slow
def test_badge_resumes_from_saved_shard_states(tmp_path, model_path):
    # a small file and a large one, one row group each: the small shard finishes (and is saved) first
    X = tied_features(60_000, distinct=20_000, seed=9)
    big = write_pool(tmp_path / "pool", X, files=1, row_group_size=60_000)
    small = tied_features(600, distinct=600, seed=10)
    import pyarrow as pa

    from alscale.datasets import feature_array

    pq.write_table(pa.table({"id": np.arange(10**6, 10**6 + 600), **feature_array(small, "binary")}), big / "part-small.parquet")
    reference = alscale.select(big, model_path, strategy="badge", k=25, actors=2, seed=1, batch_size=4096)

    out = tmp_path / "batch"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(big), str(model_path), str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    root = tmp_path / "batch.checkpoints"
    deadline = time.monotonic() + 240
    while not (list(root.glob("*/state-*.pkl")) and list(root.glob("*/shard-*.npz"))) if root.exists() else True:
        assert driver.poll() is None, f"the driver ended before any checkpoint: {driver.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.2)  # let the state file's rename land
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(30)
    driver.stderr.close()
    assert not out.exists()

    resumed = alscale.select(big, model_path, strategy="badge", k=25, actors=2, seed=1, batch_size=8, out=out)
    assert resumed.data["counts"]["shards_resumed"] >= 1  # the small shard at least came from its checkpoint
    assert resumed.ids == reference.ids
    assert not root.exists() or not list(root.glob("*/state-*.pkl"))


@pytest.mark.parametrize("strategy", ["cluster-margin", "badge"])
def test_a_corrupt_row_group_is_skipped_by_the_diversity_strategies_too(tmp_path, model_path, strategy):
    """Cluster-Margin reads every shard once before the scan (its clustering sample): it skips there too."""
    import shutil

    from tests.cluster.clusterkit import corrupt_row_group

    X = np.random.default_rng(6).normal(size=(3000, 8)).astype(np.float32) * 2
    pool = write_pool(tmp_path / "pool", X, files=3, row_group_size=500)
    clean = tmp_path / "clean"
    shutil.copytree(pool, clean)
    bad = sorted(pool.glob("*.parquet"))[1]
    corrupt_row_group(bad, row_group=1)
    params = {"n_clusters": 5} if strategy == "cluster-margin" else {}
    m = alscale.select(pool, model_path, strategy=strategy, k=20, actors=3, skip_bad_shards=True, strategy_params=params)
    assert m.data["counts"]["shards_skipped"] == 1 and bad.name in m.data["skipped_shards"][0]["pieces"][0]["path"]
    assert m.data["counts"]["rows_total"] == 2000
    assert len(m.ids) == 20 and not set(m.ids) & set(pq.read_table(clean / bad.name).column("id").to_pylist())  # the skipped shard's rows
    # reference: an undisturbed run over the files that were read
    rest = tmp_path / "rest"
    rest.mkdir()
    for f in sorted(clean.glob("*.parquet")):
        if f.name != bad.name:
            shutil.copy(f, rest / f.name)
    reference = alscale.select(rest, model_path, strategy=strategy, k=20, actors=2, strategy_params=params)
    assert m.ids == reference.ids
    np.testing.assert_allclose(np.asarray(m.batch.column("score")), np.asarray(reference.batch.column("score")), rtol=1e-6)
