"""Fixtures for the queue tests: the session's real Label Studio server, pools, manifests, workspaces."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from .queue_support import CLASSES, LS_VENV, LabelStudioServer, make_manifest, write_pool


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """The session's Label Studio server (started once: the first start migrates for ~30 s)."""
    if not (LS_VENV / "bin" / "label-studio").exists():
        if os.environ.get("ALSCALE_SKIP_LABEL_STUDIO") == "1":
            pytest.skip("Label Studio is not installed and ALSCALE_SKIP_LABEL_STUDIO=1")
        pytest.fail(f"Label Studio is not installed in {LS_VENV}; run .ci/install-label-studio "
                    "(or set ALSCALE_SKIP_LABEL_STUDIO=1 to skip these tests)", pytrace=False)
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ls_env(label_studio, monkeypatch):
    """The server's token in LABEL_STUDIO_API_KEY (where the connector reads it)."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    return label_studio


@pytest.fixture
def pool(tmp_path):
    return write_pool(tmp_path / "pool.parquet", 200)


@pytest.fixture
def manifest(tmp_path, pool):
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:30]
    return make_manifest(tmp_path / "batch-1", pool, ids, run_id="run-0001")


@pytest.fixture
def workspace(tmp_path, pool):
    from alscale.loop.workspace import Workspace

    return Workspace.create(tmp_path / "ws", pool=pool, classes=CLASSES,
                            settings={"eval_size": 10, "stop_set_size": 10, "initial_size": 10})
