"""A private local Ray started for a run is shut down and leaves nothing in the temp folder."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import ray

from alscale.engine.runtime import ray_session

pytestmark = pytest.mark.ray


def test_a_private_ray_leaves_no_temp_dir(monkeypatch):
    assert not ray.is_initialized()  # a Ray left running by an earlier test module would hide this one's
    base = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths have a length limit
    monkeypatch.setattr(tempfile, "tempdir", base)
    try:
        for _ in range(2):
            with ray_session(num_cpus=1):
                assert ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid()  # a worker that logs as it exits
                assert [p for p in os.listdir(base) if p.startswith("alscale-ray-")]
            assert not ray.is_initialized()
            assert os.listdir(base) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
