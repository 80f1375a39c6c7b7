"""Selections on a multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and two worker
nodes on this machine, one CPU each), and the faults a cluster brings: a shard actor killed
mid-scoring, a worker node removed mid-scoring, a corrupt row group.

Every run is checked against an undisturbed run and a numpy recomputation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import alscale
from alscale.exceptions import ShardError
from alscale.manifest import Manifest
from tests.cluster.clusterkit import assert_matches_reference, corrupt_row_group, read_pieces, write_pool

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ray = pytest.importorskip("ray")

K = 40
N_ROWS = 144_000
# one row per model run (eight per record batch): scoring takes seconds per actor, long enough to
# break something mid-way
SLOW = {"strategy": "entropy", "k": K, "seed": 5, "batch_size": 1}


def shard_actors(exclude: set[str] = frozenset()) -> list[dict]:
    """The ShardWorker actors the cluster knows of (GCS view), minus the ids in ``exclude``."""
    from ray._private import state

    return [
        {"id": actor_id, "pid": info["Pid"], "node": info["Address"]["NodeID"], "state": info["State"],
         "restarts": info.get("NumRestarts", 0)}
        for actor_id, info in state.actors().items()
        if info["ActorClassName"] == "ShardWorker" and actor_id not in exclude
    ]


def wait_for_alive(known: set[str], n: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [a for a in shard_actors(known) if a["state"] == "ALIVE" and a["pid"]]
        if len(alive) >= n:
            return alive
        time.sleep(0.05)
    raise AssertionError(f"{n} shard actors did not come up in {timeout}s: {shard_actors(known)}")


class Background:
    """Run ``alscale.select`` in a thread of this (the driver) process."""

    def __init__(self, *args, **kwargs):
        self.manifest = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=args, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, *args, **kwargs):
        try:
            self.manifest = alscale.select(*args, **kwargs)
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def join(self, timeout: float = 240.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the selection did not finish"
        if self.error is not None:
            raise self.error
        return self.manifest


@pytest.fixture(scope="module")
def pool(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("multinode") / "pool"
    write_pool(folder, n_rows=N_ROWS, n_files=3, seed=7)
    return folder


@pytest.fixture(scope="module")
def model(data_dir):
    return data_dir / "model.onnx"


@pytest.fixture(scope="module")
def undisturbed(ray_cluster, pool, model, tmp_path_factory):
    """An undisturbed run on the cluster, three actors, with the nodes they ran on."""
    known = {a["id"] for a in shard_actors()}
    out = tmp_path_factory.mktemp("undisturbed") / "batch"
    manifest = alscale.select(str(pool), str(model), out=str(out), actors=3, **SLOW)
    nodes = {a["node"] for a in shard_actors(known)}
    return manifest, nodes


def test_actors_spread_over_nodes_and_match_single_node(ray_cluster, undisturbed, pool, model, tmp_path):
    manifest, nodes = undisturbed
    cluster_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(cluster_nodes) == 3
    worker_nodes = {node.node_id for node in ray_cluster.worker_nodes}
    assert nodes == cluster_nodes and worker_nodes <= nodes  # one actor per node, both workers used
    assert manifest.data["counts"]["rows_scored"] == N_ROWS
    assert_matches_reference(manifest.batch, pool, K)

    # the same selection on one node: a separate process with its own local Ray
    out = tmp_path / "single"
    code = (
        "import alscale, sys; alscale.select(sys.argv[1], sys.argv[2], out=sys.argv[3], actors=1, "
        f"strategy='entropy', k={K}, seed=5, batch_size=500)"
    )
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-c", code, str(pool), str(model), str(out)],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    single = Manifest.read(out)
    assert single.data["counts"]["shards"] == 1
    assert single.batch.equals(manifest.batch)
    assert pq.read_table(out / "batch.parquet").equals(pq.read_table(manifest.path / "batch.parquet"))


def test_killed_shard_actor_is_restarted(ray_cluster, undisturbed, pool, model, tmp_path):
    known = {a["id"] for a in shard_actors()}
    run = Background(str(pool), str(model), out=str(tmp_path / "batch"), actors=3, **SLOW)
    victim = wait_for_alive(known, 3)[0]
    time.sleep(0.5)  # let it read a while
    assert run.thread.is_alive(), "the run ended before the fault"
    os.kill(victim["pid"], signal.SIGKILL)
    manifest = run.join()

    after = {a["id"]: a for a in shard_actors(known)}
    assert after[victim["id"]]["restarts"] >= 1  # the actor really died and came back
    assert manifest.batch.equals(undisturbed[0].batch)
    assert manifest.data["counts"]["rows_scored"] == N_ROWS


def run_losing_a_worker_node(ray_cluster, pool, model, out, actors: int) -> tuple:
    """Run a selection with ``actors`` actors and remove the worker node of one of them mid-scan.

    Returns the manifest and the lost actor as it was (GCS view); the cluster gets its third
    node back afterwards, for the tests after this one.
    """
    known = {a["id"] for a in shard_actors()}
    run = Background(str(pool), str(model), out=str(out), actors=actors, **SLOW)
    alive = wait_for_alive(known, actors)
    workers = {node.node_id: node for node in ray_cluster.worker_nodes}
    victim = next(a for a in alive if a["node"] in workers)
    time.sleep(0.5)
    assert run.thread.is_alive(), "the run ended before the fault"
    ray_cluster.remove_node(workers[victim["node"]], allow_graceful=False)
    try:
        return run.join(), victim
    finally:
        ray_cluster.add_node(num_cpus=1)
        ray_cluster.wait_for_nodes()


def test_removed_worker_node_is_survived(ray_cluster, undisturbed, pool, model, tmp_path):
    # two actors on three one-CPU nodes: a CPU is free for the actor that loses its node
    manifest, victim = run_losing_a_worker_node(ray_cluster, pool, model, tmp_path / "batch", actors=2)
    after = {a["id"]: a for a in shard_actors()}
    assert after[victim["id"]]["node"] != victim["node"]  # restarted elsewhere
    assert manifest.batch.equals(undisturbed[0].batch)
    assert manifest.data["counts"]["rows_scored"] == N_ROWS


def test_removed_worker_node_is_survived_with_every_cpu_in_use(ray_cluster, undisturbed, pool, model, tmp_path, caplog):
    """One actor per CPU (the default): the lost node's actor can never restart, since the others
    hold every CPU left; an idle actor takes its shard over instead of the run waiting forever."""
    manifest, _ = run_losing_a_worker_node(ray_cluster, pool, model, tmp_path / "batch", actors=3)
    assert "has not answered for 10 s" in caplog.text and "scoring it on another actor" in caplog.text
    assert manifest.batch.equals(undisturbed[0].batch)
    assert manifest.data["counts"]["rows_scored"] == N_ROWS


def test_a_node_lost_during_the_diversity_reduce_moves_its_shard_states(ray_cluster, pool, model, tmp_path, monkeypatch, caplog):
    """BADGE with one actor per CPU: the node of an actor holding a shard state goes between two
    k-means|| rounds (the moment is chosen by wrapping the shard group's ``map``); its state is
    rebuilt on a live actor and the earlier rounds replayed, so the batch is unchanged."""
    from alscale.engine import raygroup

    params = {"strategy": "badge", "k": K, "seed": 5, "actors": 3}
    reference = alscale.select(str(pool), str(model), **params)
    original = raygroup.RayShardGroup.map
    removed = []
    workers = {node.node_id: node for node in ray_cluster.worker_nodes}

    def map_then_lose_a_node(self, method, *args, **kwargs):
        if len(self.history) == 1 and not removed:  # the states are built and one round has run
            on_workers = {a["id"]: a for a in shard_actors() if a["state"] == "ALIVE" and a["node"] in workers}
            actor_id = next(h._actor_id.hex() for h, _ in self.placements if h._actor_id.hex() in on_workers)
            ray_cluster.remove_node(workers[on_workers[actor_id]["node"]], allow_graceful=False)
            removed.append(actor_id)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the actor's process outlives its raylet for a moment
                try:
                    os.kill(on_workers[actor_id]["pid"], 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        return original(self, method, *args, **kwargs)

    monkeypatch.setattr(raygroup.RayShardGroup, "map", map_then_lose_a_node)
    try:
        disturbed = alscale.select(str(pool), str(model), **params)
    finally:
        ray_cluster.add_node(num_cpus=1)
        ray_cluster.wait_for_nodes()
    assert removed, "the fault was never injected"
    assert disturbed.data["strategy"]["info"].get("shard_states_rebuilt", 0) >= 1, (removed, disturbed.data["strategy"]["info"], caplog.text[-3000:])
    assert disturbed.batch.column("id").equals(reference.batch.column("id"))
    assert disturbed.batch.column("score").equals(reference.batch.column("score"))


def test_a_node_lost_before_cluster_margin_samples_moves_its_sample(ray_cluster, pool, model, tmp_path, monkeypatch, caplog):
    """Cluster-Margin with one actor per CPU: a node goes just before the sampling pass that feeds
    the clustering. Its actor can never restart (the others hold every CPU left); another actor
    samples its shard, and the batch is the undisturbed one (it used to wait for ever)."""
    from alscale.engine import driver

    params = {"strategy": "cluster-margin", "k": K, "seed": 5, "actors": 3, "strategy_params": {"n_clusters": 4}}
    reference = alscale.select(str(pool), str(model), out=str(tmp_path / "reference" / "batch"), **params)
    original = driver.sample_shards
    removed = []
    workers = {node.node_id: node for node in ray_cluster.worker_nodes}

    def lose_a_node_then_sample(scan, m, stream):
        if not removed:
            ids = {h._actor_id.hex() for h in scan.actors}
            victim = next(a for a in shard_actors() if a["id"] in ids and a["state"] == "ALIVE" and a["node"] in workers)
            ray_cluster.remove_node(workers[victim["node"]], allow_graceful=False)
            removed.append(victim["id"])
        return original(scan, m, stream)

    monkeypatch.setattr(driver, "sample_shards", lose_a_node_then_sample)
    try:
        run = Background(str(pool), str(model), out=str(tmp_path / "disturbed" / "batch"), **params)
        disturbed = run.join(timeout=180)
    finally:
        ray_cluster.add_node(num_cpus=1)
        ray_cluster.wait_for_nodes()
    assert removed, "the fault was never injected"
    assert "sampling it on another actor" in caplog.text, caplog.text[-3000:]
    assert disturbed.batch.equals(reference.batch)


def test_corrupt_row_group_stops_the_run_or_is_skipped(ray_cluster, model, tmp_path):
    pool = write_pool(tmp_path / "pool", n_rows=900, n_files=3, seed=11)
    bad = pool / "part-001.parquet"
    corrupt_row_group(bad, row_group=1)

    with pytest.raises(ShardError) as info:
        alscale.select(str(pool), str(model), out=str(tmp_path / "fails"), actors=3, k=10)
    message = str(info.value)
    assert "part-001.parquet" in message and "row group 1" in message
    assert not (tmp_path / "fails").exists()

    manifest = alscale.select(str(pool), str(model), out=str(tmp_path / "skips"), actors=3, k=10,
                              skip_bad_shards=True)
    skipped = manifest.data["skipped_shards"]
    assert manifest.data["counts"]["shards_skipped"] == len(skipped) == 1
    pieces = skipped[0]["pieces"]
    assert any(p["path"].endswith("part-001.parquet") and p["row_group"] == 1 for p in pieces)
    assert "row group 1" in skipped[0]["error"]
    # the batch is the top 10 of the rows outside the skipped shard
    skipped_pieces = {(Path(p["path"]).name, p["row_group"]) for p in pieces}
    good = [(path, g) for path in sorted(pool.glob("*.parquet"))
            for g in range(pq.ParquetFile(path).metadata.num_row_groups)
            if (path.name, g) not in skipped_pieces]
    ids, feats = read_pieces(good)
    assert manifest.data["counts"]["rows_total"] == len(ids)
    assert_matches_reference(manifest.batch, (ids, feats), 10)
