"""Fixtures for the queue tests: the session's real Label Studio server, pools, manifests, workspaces."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from .queue_support import CLASSES, LS_VENV, LabelStudioServer, make_manifest, write_pool


def _install_label_studio() -> None:
    """First run on a new machine: make Label Studio's own virtual environment (a few minutes)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / ".ci" / "install-label-studio"
    env = dict(os.environ, ALSCALE_LABEL_STUDIO_VENV=str(LS_VENV), PYTHON=os.environ.get("PYTHON", "python3"))
    sys.stderr.write(f"installing Label Studio into {LS_VENV} (first run only) ...\n")
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not (LS_VENV / "bin" / "label-studio").exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.fail(f"Could not install Label Studio into {LS_VENV} with {script}: {tail[0]} "
                    "(set ALSCALE_SKIP_LABEL_STUDIO=1 to skip these tests)", pytrace=False)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """The session's Label Studio server (started once: the first start migrates for ~30 s)."""
    if os.environ.get("ALSCALE_SKIP_LABEL_STUDIO") == "1":
        pytest.skip("ALSCALE_SKIP_LABEL_STUDIO=1")
    if not (LS_VENV / "bin" / "label-studio").exists():
        _install_label_studio()
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
