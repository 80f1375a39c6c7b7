"""Fixtures for the cluster tests (helpers in ``clusterkit``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from tests.cluster.clusterkit import HeadNode, loopback_ray_env, write_model, write_pool


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cluster-data")
    write_pool(root / "pool")
    write_model(root / "model.onnx")
    return root


@pytest.fixture(scope="module")
def head_node(tmp_path_factory):
    # a short path: Ray's unix socket paths must stay under ~100 characters
    temp_dir = Path(tempfile.mkdtemp(prefix="alscale-ray-"))
    with loopback_ray_env():
        node = HeadNode(temp_dir)
        try:
            yield node
        finally:
            node.stop()
            shutil.rmtree(temp_dir, ignore_errors=True)


def _local_cluster(system_config: dict):
    """A head and two worker nodes on this machine (one CPU each), with this process connected."""
    import ray
    from ray._private.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process by another test module")
    temp_dir = tempfile.mkdtemp(prefix="alscale-rc-")
    # Cluster records the head's address in Ray's default temp folder whatever temp_dir says, and
    # fails where no Ray ever ran on the machine (the folder does not exist yet)
    Path(get_ray_address_file(None)).parent.mkdir(parents=True, exist_ok=True)
    with loopback_ray_env():
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "temp_dir": temp_dir, "include_dashboard": False, "_system_config": system_config},
        )
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and two worker nodes on this machine (one CPU each); this process is connected.

    Module-scoped: the module's tests share it, and Ray is shut down after the module so other
    test modules can start their own.  A removed node is noticed within seconds.
    """
    yield from _local_cluster({"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3})


@pytest.fixture(scope="module")
def ray_cluster_slow_to_notice():
    """As :func:`ray_cluster`, but a node killed without notice is declared dead only after 60 s
    (Ray's own default is 15 s): tasks on its actors fail first, as on a loaded real cluster."""
    yield from _local_cluster({"health_check_initial_delay_ms": 0, "health_check_period_ms": 2000, "health_check_failure_threshold": 30})
