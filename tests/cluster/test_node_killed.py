"""A worker node killed without notice, on a cluster slow to notice it: its actor's tasks fail
(Ray's ActorUnavailableError once their retries run out) long before the node is declared dead.
The shard goes to another actor; the batch is the undisturbed one."""

from __future__ import annotations

import time

import pytest

import alscale
from tests.cluster.test_multinode import SLOW, N_ROWS, Background, shard_actors, wait_for_alive

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from tests.cluster.clusterkit import write_pool

    folder = tmp_path_factory.mktemp("node-killed") / "pool"
    write_pool(folder, n_rows=N_ROWS, n_files=3, seed=7)
    return folder


def test_a_node_killed_mid_scan_is_survived_before_ray_declares_it_dead(ray_cluster_slow_to_notice, pool, data_dir, tmp_path, caplog):
    model = data_dir / "model.onnx"
    undisturbed = alscale.select(str(pool), str(model), actors=2, **SLOW)
    known = {a["id"] for a in shard_actors()}
    run = Background(str(pool), str(model), out=str(tmp_path / "batch"), actors=2, **SLOW)
    alive = wait_for_alive(known, 2)
    workers = {node.node_id: node for node in ray_cluster_slow_to_notice.worker_nodes}
    victim = next(a for a in alive if a["node"] in workers)
    time.sleep(0.5)
    assert run.thread.is_alive(), "the run ended before the fault"
    start = time.monotonic()
    ray_cluster_slow_to_notice.remove_node(workers[victim["node"]], allow_graceful=False)
    manifest = run.join()
    assert time.monotonic() - start < 55  # finished before Ray could have declared the node dead (60 s)
    assert "its actor was lost" in caplog.text and "scoring it on another actor" in caplog.text
    assert manifest.batch.equals(undisturbed.batch)
    assert manifest.data["counts"]["rows_scored"] == N_ROWS
