"""The pool key on Label Studio tasks, against a real server: one pool however it is spelled, another pool refused."""

from __future__ import annotations

import collections
import json
import shutil

import pyarrow.parquet as pq
import pytest

from alscale.exceptions import WorkspaceError
from alscale.loop.workspace import CONFIG_NAME, Workspace
from alscale.manifest import Manifest, write_manifest
from alscale.queues import LabelStudioConnector, pull, push

from .queue_support import CLASSES, make_manifest, write_pool

pytestmark = pytest.mark.labelstudio

SETTINGS = {"eval_size": 5, "stop_set_size": 5, "initial_size": 5}


def _settings(ls_env, project):
    return {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]}


def _free(ws, pool, n):
    taken = set(ws.excluded_ids().tolist())
    return [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist() if i not in taken][:n]


def _with_spec(m: Manifest, out, spec: str) -> Manifest:
    """The manifest as `alscale select --pool SPEC` writes it: pool.spec is what was given."""
    data = json.loads(json.dumps(m.data))
    data["pool"]["spec"] = spec
    return write_manifest(out, m.batch, data, force=True)


def test_two_workspaces_over_one_folder_pool_spelled_as_folder_and_glob_share_its_tasks(ls_env, tmp_path):
    """README: "Workspaces over one pool share its tasks": `--pool pool/` and `--pool 'pool/*.parquet'` are one pool."""
    folder = tmp_path / "pool"
    folder.mkdir()
    part = write_pool(folder / "part-0.parquet", 60)
    ws_dir = Workspace.create(tmp_path / "ws-dir", pool=folder, classes=CLASSES, settings=SETTINGS)
    ws_glob = Workspace.create(tmp_path / "ws-glob", pool=str(folder / "*.parquet"), classes=CLASSES, settings=SETTINGS)
    assert ws_dir.pool_ids().tolist() == ws_glob.pool_ids().tolist()  # one pool
    ids = _free(ws_dir, part, 5)
    m = make_manifest(tmp_path / "b", part, ids, run_id="run-1")
    project = ls_env.create_project()
    push(m, _settings(ls_env, project), workspace=ws_dir)
    again = push(m, _settings(ls_env, project), workspace=ws_glob)
    counts = collections.Counter(t["data"]["alscale_id"] for t in ls_env.tasks(project))
    assert again.pushed == () and list(again.existing) == ids, f"second copies made: {counts}"


def test_a_select_manifest_over_a_glob_pushed_without_a_workspace_is_found_by_the_folders_workspace(ls_env, tmp_path):
    """A manifest of `alscale select --pool 'pool/*.parquet'` (pool.spec is the glob) is the pool of a workspace made with `--pool pool/`."""
    folder = tmp_path / "pool"
    folder.mkdir()
    part = write_pool(folder / "part-0.parquet", 60)
    ws = Workspace.create(tmp_path / "ws", pool=folder, classes=CLASSES, settings=SETTINGS)
    ids = _free(ws, part, 5)
    m = _with_spec(make_manifest(tmp_path / "b0", part, ids, run_id="run-1"), tmp_path / "b", str(folder / "*.parquet"))
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    assert list(conn.push(m).pushed) == ids
    again = conn.push(m, workspace=ws)
    assert again.pushed == () and list(again.existing) == ids


def test_another_pools_manifest_with_overlapping_ids_is_not_tagged_with_this_workspaces_key(ls_env, tmp_path):
    """Pool B's batch pushed with pool A's workspace: its ids are all in pool A, so only the pool it names
    tells it apart; tagged with A's key, its answers would be taken for labels of A's rows."""
    pool_a, pool_b = write_pool(tmp_path / "a.parquet", 60), write_pool(tmp_path / "b.parquet", 60)
    ws_a = Workspace.create(tmp_path / "ws-a", pool=pool_a, classes=CLASSES, settings=SETTINGS)
    ids = _free(ws_a, pool_a, 4)
    m_b = _with_spec(make_manifest(tmp_path / "batch-b0", pool_b, ids, run_id="run-b"), tmp_path / "batch-b", str(pool_b))
    project = ls_env.create_project()
    with pytest.raises(WorkspaceError, match=r"Expected a batch of the pool of workspace '.*ws-a' \('.*a\.parquet', key \w+\)\. "
                       r"Got batch run-b of the pool '.*b\.parquet'"):
        push(m_b, _settings(ls_env, project), workspace=ws_a)
    assert ls_env.tasks(project) == [] and ws_a.pending().num_rows == 0
    m_a = _with_spec(make_manifest(tmp_path / "batch-a0", pool_a, ids, run_id="run-a"), tmp_path / "batch-a", str(pool_a))
    assert list(push(m_a, _settings(ls_env, project), workspace=ws_a).pushed) == ids


def test_a_workspace_whose_pool_moved_takes_batches_of_either_place(ls_env, tmp_path):
    """After the pool moved and the workspace's pool path was edited, batches selected before and after are both its own."""
    pool = write_pool(tmp_path / "pool.parquet", 60)
    ws = Workspace.create(tmp_path / "ws", pool=pool, classes=CLASSES, settings=SETTINGS)
    ids = _free(ws, pool, 6)
    before = _with_spec(make_manifest(tmp_path / "b0", pool, ids[:3], run_id="run-before"), tmp_path / "b1", str(pool))
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(pool, moved / "pool.parquet")  # copied to its new place; the old batch still reads its rows there
    config = json.loads((ws.path / CONFIG_NAME).read_text())
    config["pool"] = str(moved / "pool.parquet")
    (ws.path / CONFIG_NAME).write_text(json.dumps(config))
    ws = Workspace.open(ws.path)
    after = _with_spec(make_manifest(tmp_path / "a0", moved / "pool.parquet", ids[3:], run_id="run-after"), tmp_path / "a1",
                       str(moved / "pool.parquet"))
    project = ls_env.create_project()
    for m in (before, after):
        push(m, _settings(ls_env, project), workspace=ws)
    assert {t["data"]["alscale_pool"] for t in ls_env.tasks(project)} == {ws.pool_key}
    assert sorted(ws.pending().column("id").to_pylist()) == ids


def test_pending_can_be_asked_for_one_pools_tasks(ls_env, tmp_path):
    """In a project shared by pools with the same ids, pending() lists each id once per pool; pending(pool=...) one pool's."""
    pools = [write_pool(tmp_path / f"{n}.parquet", 60) for n in "ab"]
    spaces = [Workspace.create(tmp_path / f"ws-{n}", pool=p, classes=CLASSES, settings=SETTINGS) for n, p in zip("ab", pools)]
    ids = _free(spaces[0], pools[0], 4)
    project = ls_env.create_project()
    for ws, p, n in zip(spaces, pools, "ab"):
        push(make_manifest(tmp_path / f"batch-{n}", p, ids, run_id=f"run-{n}"), _settings(ls_env, project), workspace=ws)
    conn = LabelStudioConnector(ls_env.url, project)
    assert collections.Counter(conn.pending()) == {i: 2 for i in ids}
    assert sorted(conn.pending(pool=spaces[0].pool_key)) == sorted(conn.pending(pool=spaces[1].pool_key)) == ids
    ls_env.annotate(next(t["id"] for t in ls_env.tasks(project) if t["data"]["alscale_pool"] == spaces[0].pool_key
                         and t["data"]["alscale_id"] == ids[0]), "cat")
    assert sorted(conn.pending(pool=spaces[0].pool_key)) == ids[1:] and sorted(conn.pending(pool=spaces[1].pool_key)) == ids


def test_an_older_workspaces_key_is_kept_once_its_tasks_carry_it(ls_env, tmp_path):
    """A workspace made before the key was stored keeps the key its first push used: its tasks stay its own after the pool moves."""
    pool = write_pool(tmp_path / "pool.parquet", 60)
    ws = Workspace.create(tmp_path / "ws", pool=pool, classes=CLASSES, settings=SETTINGS)
    cfg = ws.path / CONFIG_NAME
    config = json.loads(cfg.read_text())
    del config["pool_key"]  # made before this change
    cfg.write_text(json.dumps(config))
    ws = Workspace.open(ws.path)
    ids = _free(ws, pool, 3)
    project = ls_env.create_project()
    push(make_manifest(tmp_path / "b", pool, ids, run_id="run-1"), _settings(ls_env, project), workspace=ws)
    config = json.loads(cfg.read_text())
    assert config["pool_key"] == ws.pool_key  # stored by the first use
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(pool, moved / "pool.parquet")
    config["pool"] = str(moved / "pool.parquet")
    cfg.write_text(json.dumps(config))
    ws = Workspace.open(ws.path)
    for t in ls_env.tasks(project):
        ls_env.annotate(t["id"], "cat")
    got = pull(_settings(ls_env, project), workspace=ws)
    assert sorted(r["id"] for r in got) == ids
