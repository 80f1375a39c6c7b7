"""Labels are kept per Label Studio server and project: two servers whose ids meet, and workspaces of bare names (real servers)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from alscale.queues import LabelStudioConnector, WebhookListener

from .queue_support import make_manifest

pytestmark = pytest.mark.labelstudio


def _free_ids(pool, workspace, n):
    """``n`` ids of the pool that the workspace neither holds back (evaluation) nor sent."""
    taken = set(workspace.excluded_ids().tolist())
    return [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist() if i not in taken][:n]


def _head_version(workspace) -> int:
    return json.loads((workspace.path / "state" / "HEAD.json").read_text())["version"]


def test_two_servers_numbering_projects_and_annotations_alike_keep_each_ones_labels(ls_env, tmp_path, pool, workspace, caplog):
    """A workspace pulls from server A's project P, then pushes to and pulls from server B's project P, whose annotations have A's ids."""
    other = ls_env.clone(tmp_path / "ls-b")  # A's database as it is now: B numbers what it makes next as A does
    other.start()
    try:
        project = ls_env.create_project()
        assert other.create_project() == project
        ids = _free_ids(pool, workspace, 20)
        conn_a = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
        conn_b = LabelStudioConnector(other.url, project, data_columns=["text"])
        assert conn_a.name != conn_b.name

        conn_a.push(make_manifest(tmp_path / "ba", pool, ids[:10], run_id="run-a"), workspace=workspace)
        tasks_a = {t["data"]["alscale_id"]: t["id"] for t in ls_env.tasks(project)}
        from_a = [ls_env.annotate(tasks_a[i], "cat")["id"] for i in ids[:3]]
        assert len(conn_a.pull(workspace=workspace)) == 3

        conn_b.push(make_manifest(tmp_path / "bb", pool, ids[10:], run_id="run-b"), workspace=workspace)
        tasks_b = {t["data"]["alscale_id"]: t["id"] for t in other.tasks(project)}
        from_b = [other.annotate(tasks_b[i], "dog")["id"] for i in ids[10:13]]
        assert from_b == from_a  # the two servers' annotations have the same ids
        with caplog.at_level("WARNING"):
            assert len(conn_b.pull(workspace=workspace)) == 3
            assert len(conn_a.pull(workspace=workspace)) == 3
    finally:
        other.stop()

    labels = {r["id"]: (r["label"], r["source"]) for r in workspace.labeled().to_pylist()}
    assert labels == {**{i: ("cat", conn_a.name) for i in ids[:3]}, **{i: ("dog", conn_b.name) for i in ids[10:13]}}
    assert workspace.label_log().num_rows == 6
    assert "deleted there" not in caplog.text and "label record(s)" not in caplog.text, caplog.text
    pending = sorted(zip(workspace.pending().column("queue").to_pylist(), workspace.pending().column("id").to_pylist()))
    assert pending == sorted([(conn_a.name, i) for i in ids[3:10]] + [(conn_b.name, i) for i in ids[13:]])


@pytest.mark.parametrize("by", ["pull", "reconcile"])
def test_a_workspace_of_bare_queue_names_is_taken_over_by_the_first_connector_once(ls_env, tmp_path, pool, workspace, caplog, by):
    """What an alscale that named queues ``label-studio:N`` recorded becomes this server's project N's, once, in one commit."""
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    ids = _free_ids(pool, workspace, 8)
    conn.push(make_manifest(tmp_path / "b", pool, ids, run_id="run-old"))  # the tasks; what the workspace kept is written below
    bare = f"label-studio:{project}"
    tasks = {t["data"]["alscale_id"]: t["id"] for t in ls_env.tasks(project)}
    workspace.add_sent(bare, "run-old")
    workspace.add_pending(ids, batch_run_id="run-old", queue=bare)
    ls_env.annotate(tasks[ids[0]], "cat")
    workspace.record_labels([dict(r, source=bare) for r in conn.pull()])  # as that alscale's pull recorded the answer
    ls_env.annotate(tasks[ids[1]], "dog")  # answered since

    def take():
        if by == "pull":
            conn.pull(workspace=workspace)
            return
        listener = WebhookListener(workspace, secret="s3cret", connector=conn, port=0)
        try:
            listener.reconcile()
        finally:
            listener.server.server_close()

    with caplog.at_level("WARNING"):
        take()
    moved = [r.getMessage() for r in caplog.records if f"kept as {bare} " in r.getMessage()]
    assert moved == [f"workspace {workspace.path}: 1 label record(s), 7 pending id(s) and 1 sent batch(es) kept as {bare} (queue "
                     f"names carried no server then) are now {conn.name}'s, this connector's server"]
    assert "deleted there" not in caplog.text and "label record(s) of tasks" not in caplog.text, caplog.text
    assert workspace.queue_names() == {conn.name}
    assert [(r["id"], r["label"], r["source"]) for r in workspace.label_log().to_pylist()] == [
        (ids[0], "cat", conn.name), (ids[1], "dog", conn.name)]  # the answer kept before is not kept twice
    assert sorted(workspace.pending().column("id").to_pylist()) == sorted(ids[2:])
    assert workspace.sent_runs(conn.name) == {"run-old"}

    version, log = _head_version(workspace), workspace.label_log()
    caplog.clear()
    with caplog.at_level("WARNING"):
        take()
    assert _head_version(workspace) == version and workspace.label_log().equals(log)  # nothing to take over, nothing new
    assert caplog.text == ""


def test_a_pull_through_another_url_of_the_server_names_the_url_the_batch_went_to(ls_env, tmp_path, pool, workspace, caplog):
    """One server under two URLs is two queues: the pull leaves the push's answers out and says where they were sent."""
    project = ls_env.create_project()
    pushed = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    pushed.push(make_manifest(tmp_path / "b", pool, _free_ids(pool, workspace, 3), run_id="run-u"), workspace=workspace)
    ls_env.annotate(ls_env.tasks(project)[0]["id"], "cat")
    other_url = ls_env.url.replace("127.0.0.1", "localhost")
    with caplog.at_level("WARNING"):
        assert LabelStudioConnector(other_url, project).pull(workspace=workspace) == []
    assert (f"workspace {workspace.path} sent batches to project {project} of {ls_env.url}; if that is this server under "
            "another URL, pull through that URL") in caplog.text
    assert len(pushed.pull(workspace=workspace)) == 1
