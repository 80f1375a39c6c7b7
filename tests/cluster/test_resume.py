"""Resume: a driver killed with SIGKILL mid-run leaves checkpoints of its finished shards; the
rerun reuses them (the manifest counts them) and writes the identical batch.
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

import alscale
from alscale.config import make_settings
from alscale.manifest import Manifest
from tests.cluster.clusterkit import assert_matches_reference, read_pool, write_pool

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ray = pytest.importorskip("ray")

K = 30
PARAMS = {"strategy": "entropy", "k": K, "seed": 2, "batch_size": 2, "actors": 2}
# two files, one row group each: two equal shards.  All but SCORED rows of the second are excluded,
# so the model runs (in 2-row runs) on few of its rows: it finishes first, the first shard seconds
# later, and the second shard's checkpoint is written before the first ends
SIZES = [120000, 120000]
SCORED = 1200

DRIVER = """
import sys, ray, alscale
ray.init(address=sys.argv[1], log_to_driver=False)
alscale.select(sys.argv[2], sys.argv[3], out=sys.argv[4], **eval(sys.argv[5]))
"""


@pytest.fixture(scope="module", params=["increasing", "shuffled"])
def pool(request, tmp_path_factory):
    """Increasing ids (a shard's checkpoint keeps no keys) or shuffled ones (it keeps them)."""
    folder = tmp_path_factory.mktemp("resume") / f"pool-{request.param}"
    return write_pool(folder, sizes=SIZES, row_group=max(SIZES), seed=3, shuffle_ids=request.param == "shuffled")


@pytest.fixture(scope="module")
def params(pool):
    """PARAMS, excluding the second file's rows but SCORED of them."""
    ids, _ = read_pool(pool)
    excluded = pool.parent / f"exclude-{pool.name}.txt"
    excluded.write_text("\n".join(str(i) for i in ids[SIZES[0] + SCORED :]) + "\n")
    return {**PARAMS, "exclude": [str(excluded)]}


def selectable(pool) -> tuple[np.ndarray, np.ndarray]:
    """The rows a run with :func:`params` may select: ``(ids, features)``."""
    ids, x = read_pool(pool)
    keep = np.arange(len(ids)) < SIZES[0] + SCORED
    return ids[keep], x[keep]


def checkpoint_files(out) -> list:
    root = out.parent / (out.name + ".checkpoints")
    return sorted(root.glob("*/shard-*.npz")) if root.exists() else []


def test_rerun_after_driver_sigkill_reuses_finished_shards(ray_cluster, pool, params, data_dir, tmp_path):
    model = data_dir / "model.onnx"
    reference = alscale.select(str(pool), str(model), out=str(tmp_path / "reference"), **params)
    assert reference.data["counts"]["shards_resumed"] == 0
    assert not (tmp_path / "reference.checkpoints").exists()  # removed once the manifest is safe
    assert_matches_reference(reference.batch, selectable(pool), K)

    out = tmp_path / "batch"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, ray_cluster.address, str(pool), str(model), str(out), repr(params)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    while not checkpoint_files(out):
        assert driver.poll() is None, f"the driver ended before any checkpoint: {driver.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(30)
    driver.stderr.close()
    assert driver.returncode == -signal.SIGKILL
    assert not out.exists(), "the killed driver wrote its manifest"
    saved = checkpoint_files(out)
    assert [p.name for p in saved] == ["shard-00001.npz"]  # the mostly excluded shard only
    with np.load(saved[0]) as npz:  # the keys of the duplicate-id check, when the ids do not increase
        kept = np.concatenate([npz[name] for name in npz.files if name.startswith("bucket_")])
    assert kept.size == (SIZES[1] if "shuffled" in pool.name else 0)

    resumed = alscale.select(str(pool), str(model), out=str(out), **params)
    counts = resumed.data["counts"]
    assert counts["shards_resumed"] == 1 and counts["shards"] == 2
    assert counts["rows_scored"] == SIZES[0] + SCORED and counts["rows_excluded"] == SIZES[1] - SCORED
    assert pq.read_table(out / "batch.parquet").equals(pq.read_table(tmp_path / "reference" / "batch.parquet"))
    assert Manifest.read(out).batch.equals(reference.batch)
    assert not checkpoint_files(out)


def test_checkpoint_key_follows_the_inputs(pool, data_dir, tmp_path):
    from alscale.engine.checkpoint import checkpoint_key
    from alscale.engine.driver import prepare_run
    from alscale.pool.shards import plan_shards

    def key(**changes):
        options = {"pool": str(pool), "model": (str(data_dir / "model.onnx"),), "out": str(tmp_path / "o"),
                   "strategy": "entropy", "k": K, "seed": 2}
        options.update(changes)
        run = prepare_run(make_settings(**options))
        return checkpoint_key(run, plan_shards(run.pool, 2), 2)

    base = key()
    assert key() == base
    assert key(batch_size=7) == base  # batching does not change a shard's result
    for change in ({"k": K + 1}, {"seed": 3}, {"strategy": "margin"}):
        assert key(**change) != base, change
