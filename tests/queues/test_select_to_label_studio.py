"""End to end: a real ``alscale.select`` manifest pushed into Label Studio, labeled, pulled back."""

from __future__ import annotations

import collections

import pytest

from .queue_support import write_pool

pytestmark = [pytest.mark.labelstudio, pytest.mark.ray, pytest.mark.slow]


def test_selected_batch_round_trip(ls_env, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    import alscale
    from alscale.datasets import make_model
    from alscale.loop.workspace import Workspace
    from alscale.queues import LabelStudioConnector

    pool = write_pool(tmp_path / "pool.parquet", 300)
    model = make_model(tmp_path / "model.onnx", n_features=4, n_classes=3, hidden=8, n_train=300)
    manifest = alscale.select(str(pool), str(model), strategy="entropy", k=25, out=str(tmp_path / "batch"), actors=1)
    classes = [str(c) for c in manifest.data["model"]["classes"]]
    ws = Workspace.create(tmp_path / "ws", pool=pool, classes=classes, settings={"eval_size": 10, "stop_set_size": 10, "initial_size": 10})
    project = ls_env.create_project(classes=classes)
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    result = conn.push(manifest.path, workspace=ws)
    assert list(result.pushed) == manifest.ids
    tasks = ls_env.tasks(project)
    assert collections.Counter(t["data"]["alscale_id"] for t in tasks) == collections.Counter(manifest.ids)
    by_id = {t["data"]["alscale_id"]: t for t in tasks}
    for row in manifest.batch.to_pylist():
        assert by_id[row["id"]]["predictions"][0]["result"][0]["value"]["choices"] == [row["predicted_class"]]
    # the most informative example is served first
    assert min(tasks, key=lambda t: t["predictions"][0]["score"])["data"]["alscale_id"] == manifest.ids[0]
    for t in tasks[:5]:
        ls_env.annotate(t["id"], classes[0])
    conn.pull(workspace=ws)
    assert {r["id"] for r in ws.labeled().to_pylist()} == {t["data"]["alscale_id"] for t in tasks[:5]}
    assert set(ws.excluded_ids().tolist()) >= set(manifest.ids)
