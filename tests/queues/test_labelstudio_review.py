"""Label Studio fixes from the 2026-12-07 review, against a real Label Studio server on 127.0.0.1."""

from __future__ import annotations

import collections
import threading
import time

import pyarrow.parquet as pq
import pytest

from alscale.loop.workspace import Workspace
from alscale.queues import LabelStudioConnector

from .queue_support import make_manifest

pytestmark = pytest.mark.labelstudio


def test_two_pushes_of_one_batch_at_once_import_each_task_once(ls_env, tmp_path, pool, workspace, caplog):
    project = ls_env.create_project()
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:60]
    batch = make_manifest(tmp_path / "b", pool, ids, run_id="run-cc")
    first = LabelStudioConnector(ls_env.url, project, data_columns=["text"], chunk_size=20)
    second = LabelStudioConnector(ls_env.url, project, data_columns=["text"], chunk_size=20)
    results, started = {}, []
    real_import = first._import_chunk

    def slow_import(tasks):  # the second push starts while the first is importing its first chunk
        if not started:
            started.append(threading.Thread(target=lambda: results.setdefault(
                "second", second.push(batch, workspace=Workspace.open(workspace.path)))))
            started[0].start()
            time.sleep(1.5)
        real_import(tasks)

    first._import_chunk = slow_import
    results["first"] = first.push(batch, workspace=workspace)
    started[0].join(60)
    counts = collections.Counter(t["data"]["alscale_id"] for t in ls_env.tasks(project))
    assert counts == collections.Counter(ids)  # one task per id, not two
    assert len(results["first"].pushed) == 60 and results["second"].pushed == ()
    assert sorted(results["second"].existing) == sorted(ids)
    assert "another push from workspace" in caplog.text
