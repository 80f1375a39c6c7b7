"""Label Studio fixes from the 2026-12-07 review, against a real Label Studio server on 127.0.0.1."""

from __future__ import annotations

import collections
import threading
import time

import pyarrow.parquet as pq
import pytest

from alscale.loop.workspace import Workspace
from alscale.exceptions import QueueError
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


def test_a_model_batch_of_a_workspace_without_classes_is_refused_with_the_way_out(ls_env, tmp_path, pool):
    ws = Workspace.create(tmp_path / "wsn", pool=pool, settings={"eval_size": 10, "stop_set_size": 10, "initial_size": 10})
    assert ws.classes is None
    project = ls_env.create_project()  # choices cat, dog, fox
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:5]
    batch = make_manifest(tmp_path / "b", pool, ids, run_id="run-nc", classes=["cat", "dog"])  # no 'fox' labeled yet
    with pytest.raises(QueueError, match=r"not in the model \['fox'\]\. The workspace has no class list \(made without --classes\)"):
        LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(batch, workspace=ws)
    assert ls_env.tasks(project) == []


def test_a_project_whose_choices_allow_several_answers_is_refused_at_push(ls_env, tmp_path, pool, workspace):
    with ls_env.client() as c:
        cfg = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="multiple">'
               '<Choice value="cat"/><Choice value="dog"/><Choice value="fox"/></Choices></View>')
        project = c.post("/api/projects/", json={"title": "multi", "label_config": cfg}).json()["id"]
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:5]
    batch = make_manifest(tmp_path / "b", pool, ids, run_id="run-mc")
    with pytest.raises(QueueError, match=r"<Choices name='label'> allows several answers"):
        LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(batch, workspace=workspace)
    assert ls_env.tasks(project) == [] and workspace.pending().num_rows == 0
