"""Label Studio connector against a real Label Studio server on 127.0.0.1."""

from __future__ import annotations

import collections
import threading
import time

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from alscale.cli import main
from alscale.exceptions import ConfigError, QueueAuthError, QueueError, QueueUnavailableError
from alscale.queues import LabelStudioConnector, prediction_score, pull, push

from .queue_support import CLASSES, ROOT, TASK_PAGE_CAP, free_port, make_manifest, write_pool

pytestmark = pytest.mark.labelstudio


def _ids_per_task(tasks):
    return collections.Counter(t["data"]["alscale_id"] for t in tasks)


def test_push_creates_one_task_per_example_with_data_meta_and_prediction(ls_env, manifest, workspace):
    project = ls_env.create_project()
    result = push(manifest, {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]},
                  workspace=workspace)
    batch = manifest.batch.to_pylist()
    assert list(result.pushed) == [r["id"] for r in batch] and result.existing == ()

    tasks = ls_env.tasks(project)
    assert _ids_per_task(tasks) == collections.Counter(r["id"] for r in batch)
    pool = {r["id"]: r["text"] for r in pq.read_table(manifest.data["pool"]["paths"][0]).to_pylist()}
    by_id = {t["data"]["alscale_id"]: t for t in tasks}
    for r in batch:
        t = by_id[r["id"]]
        assert t["data"]["text"] == pool[r["id"]]
        assert t["meta"]["alscale_run"] == t["data"]["alscale_run"] == "run-0001"
        assert t["meta"]["alscale_rank"] == r["rank"]
        (pred,) = t["predictions"]
        assert pred["result"][0]["value"]["choices"] == [r["predicted_class"]]
        assert pred["score"] == pytest.approx((r["rank"] - 1) / (len(batch) - 1))
    # Label Studio's uncertainty sampling serves ascending prediction score: that is rank order
    served = sorted(tasks, key=lambda t: t["predictions"][0]["score"])
    assert [t["data"]["alscale_id"] for t in served] == [r["id"] for r in batch]

    pending = workspace.pending()
    assert sorted(pending.column("id").to_pylist()) == sorted(r["id"] for r in batch)
    assert set(pending.column("queue").to_pylist()) == {f"label-studio:{project}@{ls_env.url}"}  # the project at its server
    assert set(workspace.excluded_ids().tolist()) >= {r["id"] for r in batch}


def test_push_twice_and_overlapping_batches_make_no_duplicates(ls_env, tmp_path, pool, workspace):
    project = ls_env.create_project()
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()
    first = make_manifest(tmp_path / "b1", pool, ids[:40], run_id="run-a")
    second = make_manifest(tmp_path / "b2", pool, ids[30:60], run_id="run-b")
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"], chunk_size=7, lookup_chunk=9, page_size=11)
    assert len(conn.push(first, workspace=workspace).pushed) == 40
    again = conn.push(first, workspace=workspace)
    assert again.pushed == () and sorted(again.existing) == sorted(ids[:40])
    overlap = conn.push(second, workspace=workspace)
    assert sorted(overlap.existing) == sorted(ids[30:40]) and sorted(overlap.pushed) == sorted(ids[40:60])
    counts = _ids_per_task(ls_env.tasks(project))
    assert counts == collections.Counter(ids[:60])
    assert sorted(conn.pending()) == sorted(ids[:60])
    assert sorted(workspace.pending().column("id").to_pylist()) == sorted(ids[:60])


def test_two_workspaces_pushing_one_batch_at_the_same_time_end_with_one_task_per_id(ls_env, tmp_path, pool, workspace):
    """Each push looks the ids up, finds none, and imports them: both imports land, and both pushes keep the lowest task ids."""
    from alscale.loop.workspace import Workspace

    other = Workspace.create(tmp_path / "ws2", pool=pool, classes=CLASSES, settings={"eval_size": 10, "stop_set_size": 10, "initial_size": 10})
    taken = set(workspace.excluded_ids().tolist()) | set(other.excluded_ids().tolist())
    ids = [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist() if i not in taken][:40]
    m = make_manifest(tmp_path / "b", pool, ids, run_id="run-race")
    project = ls_env.create_project()
    both_looked = threading.Barrier(2, timeout=120)  # each import waits for the other push's: the race, every time

    class Racing(LabelStudioConnector):
        def _import_chunk(self, tasks):
            both_looked.wait()
            return super()._import_chunk(tasks)

    results, errors = {}, []

    def push_from(ws):
        try:
            results[ws.path.name] = Racing(ls_env.url, project, data_columns=["text"], chunk_size=15, lookup_chunk=9).push(m, workspace=ws)
        except BaseException as exc:  # noqa: BLE001 - said by the assertion below
            errors.append(exc)
            both_looked.abort()

    threads = [threading.Thread(target=push_from, args=(ws,)) for ws in (workspace, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert all(len(r.pushed) == len(ids) for r in results.values())  # each imported every id: the race happened
    assert sum(r.details["duplicates_removed"] for r in results.values()) >= len(ids)
    tasks = ls_env.tasks(project)
    assert _ids_per_task(tasks) == collections.Counter(ids)
    there = {t["data"]["alscale_id"] for t in tasks}
    for ws in (workspace, other):
        pending = ws.pending()
        assert sorted(pending.column("id").to_pylist()) == sorted(ids) and set(pending.column("id").to_pylist()) <= there
        assert set(pending.column("queue").to_pylist()) == {f"label-studio:{project}@{ls_env.url}"}


def test_a_push_removes_unanswered_copies_and_never_an_answered_task(ls_env, tmp_path, pool, workspace, caplog):
    """Copies an earlier race left: the lowest task id stays, answered copies stay too (with a warning), the others go."""
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:6]
    m = make_manifest(tmp_path / "b", pool, ids, run_id="run-copies")
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    conn.push(m, workspace=workspace)
    first = {t["data"]["alscale_id"]: t for t in ls_env.tasks(project)}
    with ls_env.client() as c:  # a second task for ids 0-3, as a push that raced this one made it
        r = c.post(f"/api/projects/{project}/import", json=[{"data": first[i]["data"], "meta": first[i]["meta"]} for i in ids[:4]])
        r.raise_for_status()
    copies = {t["data"]["alscale_id"]: t["id"] for t in ls_env.tasks(project) if t["id"] != first[t["data"]["alscale_id"]]["id"]}
    ls_env.annotate(copies[ids[0]], "cat")  # the copy answered: it stays beside the first task
    ls_env.annotate(first[ids[1]]["id"], "dog")
    ls_env.annotate(copies[ids[1]], "fox")  # both answered: both stay
    assert conn._delete_unanswered([copies[ids[0]]]) == 0  # the server's own check: an answered task is not deleted

    with caplog.at_level("WARNING"):
        res = CliRunner(env={"LABEL_STUDIO_API_KEY": ls_env.token}).invoke(
            main, ["push", str(m.path), "-w", str(workspace.path), "--url", ls_env.url, "--project", str(project), "--data-column", "text"])
    assert res.exit_code == 0, res.output
    assert "pushed 0 new, 6 already there, 2 duplicate task(s) of another push removed (batch run-copies" in res.output
    left = collections.Counter(t["data"]["alscale_id"] for t in ls_env.tasks(project))
    assert left == collections.Counter({ids[0]: 2, ids[1]: 2, **{i: 1 for i in ids[2:]}})
    assert {t["id"] for t in ls_env.tasks(project) if t["data"]["alscale_id"] in ids[2:4]} == {first[i]["id"] for i in ids[2:4]}
    assert "2 id(s) keep several tasks in" in caplog.text and "an answered task is never removed" in caplog.text
    assert conn.push(m, workspace=workspace).details["duplicates_removed"] == 0


def test_a_server_that_caps_task_pages_still_gets_no_duplicates(ls_env, tmp_path, pool, workspace):
    project = ls_env.create_project()
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:3 * TASK_PAGE_CAP + 5]
    m = make_manifest(tmp_path / "b", pool, ids, run_id="run-cap")
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])  # asks for 1,000 tasks a page
    assert len(conn.push(m, workspace=workspace).pushed) == len(ids)
    again = conn.push(m, workspace=workspace)
    assert again.pushed == () and sorted(again.existing) == sorted(ids)
    assert _ids_per_task(ls_env.tasks(project)) == collections.Counter(ids)
    assert sorted(conn.pending()) == sorted(ids)


def test_string_ids(ls_env, tmp_path):
    pool = write_pool(tmp_path / "pool-s.parquet", 50, string_ids=True)
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[5:25]
    m = make_manifest(tmp_path / "bs", pool, ids, run_id="run-s")
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns={"text": "text"}, lookup_chunk=6)
    conn.push(m)
    assert conn.push(m).pushed == ()
    assert conn.find_existing(ids + ["doc-99999"]).keys() == set(ids)
    assert _ids_per_task(ls_env.tasks(project)) == collections.Counter(ids)


def test_ids_that_look_percent_encoded_are_found_again(ls_env, tmp_path):
    import pyarrow as pa

    ids = ["s3://bucket/my%20photo.jpg", "https://x.org/a%2Fb", "%20", "pct%25", "100%", "plain"]
    pool = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"id": ids, "text": [f"t{i}" for i in range(len(ids))]}), pool)
    m = make_manifest(tmp_path / "bu", pool, ids, run_id="run-u")
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    assert len(conn.push(m).pushed) == len(ids)
    assert set(conn.find_existing(ids)) == set(ids)
    again = conn.push(m)
    assert again.pushed == () and sorted(again.existing) == sorted(ids)
    assert _ids_per_task(ls_env.tasks(project)) == collections.Counter(ids)


def test_pull_into_workspaces_sharing_a_project_takes_each_its_own(ls_env, tmp_path, manifest, workspace, caplog):
    """Two workspaces (integer and string ids) push into one project: neither pull is blocked by the other's tasks."""
    from alscale.loop.workspace import Workspace

    strings = write_pool(tmp_path / "strings.parquet", 50, string_ids=True)
    other_ws = Workspace.create(tmp_path / "ws-s", pool=strings, classes=CLASSES,
                                settings={"eval_size": 5, "stop_set_size": 5, "initial_size": 5})
    other = make_manifest(tmp_path / "b-s", strings, [f"doc-{i:05d}" for i in range(10, 20)], run_id="run-s")
    project = ls_env.create_project()
    settings = {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]}
    push(manifest, settings, workspace=workspace)
    push(other, settings, workspace=other_ws)
    by_id = {t["data"]["alscale_id"]: t["id"] for t in ls_env.tasks(project)}
    mine = manifest.batch.column("id").to_pylist()[:3]
    theirs = other.batch.column("id").to_pylist()[:3]
    for i in (*mine, *theirs):
        ls_env.annotate(by_id[i], "dog")

    with caplog.at_level("WARNING"):
        pull(settings, workspace=workspace)
        pull(settings, workspace=other_ws)
    assert sorted(r["id"] for r in workspace.labeled().to_pylist()) == sorted(mine)
    assert sorted(r["id"] for r in other_ws.labeled().to_pylist()) == sorted(theirs)
    assert caplog.text.count("left out 3 answered task(s) of other pools") == 2  # each pool's tasks carry its own key
    assert "label record(s)" not in caplog.text


def test_two_workspaces_with_the_same_ids_in_one_project_each_take_only_what_they_sent(ls_env, tmp_path, pool, workspace):
    from alscale.loop.workspace import Workspace

    twin = Workspace.create(tmp_path / "ws-twin", pool=pool, classes=CLASSES, settings={"eval_size": 10, "stop_set_size": 10, "initial_size": 10})
    free = [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist()
            if i not in set(workspace.excluded_ids().tolist()) | set(twin.excluded_ids().tolist())]
    project = ls_env.create_project()
    settings = {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]}
    push(make_manifest(tmp_path / "mine", pool, free[:5], run_id="run-mine"), settings, workspace=workspace)
    push(make_manifest(tmp_path / "theirs", pool, free[5:9], run_id="run-theirs"), settings, workspace=twin)
    for t in ls_env.tasks(project):
        ls_env.annotate(t["id"], "dog")
    pull(settings, workspace=workspace)
    pull(settings, workspace=twin)
    assert sorted(workspace.labeled().column("id").to_pylist()) == sorted(free[:5])
    assert sorted(twin.labeled().column("id").to_pylist()) == sorted(free[5:9])


def _two_pools_with_the_same_ids(tmp_path):
    """Two pools whose ids are both 1000-1059, a workspace on each, and ids neither reserved."""
    from alscale.loop.workspace import Workspace

    pools = [write_pool(tmp_path / f"pool-{name}.parquet", 60) for name in ("a", "b")]
    spaces = [Workspace.create(tmp_path / f"ws-{name}", pool=p, classes=CLASSES,
                               settings={"eval_size": 5, "stop_set_size": 5, "initial_size": 5}) for name, p in zip("ab", pools)]
    taken = set().union(*(set(ws.excluded_ids().tolist()) for ws in spaces))
    free = [i for i in pq.read_table(pools[0], columns=["id"]).column("id").to_pylist() if i not in taken]
    assert spaces[0].pool_key != spaces[1].pool_key
    return pools, spaces, free


def test_pools_with_overlapping_ids_share_a_project_each_with_its_own_tasks_and_labels(ls_env, tmp_path):
    (pool_a, pool_b), (ws_a, ws_b), free = _two_pools_with_the_same_ids(tmp_path)
    ids_a, ids_b = free[:6], free[3:9]  # three ids in both batches, each meaning another row
    project = ls_env.create_project()
    settings = {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]}
    batch_a = make_manifest(tmp_path / "batch-a", pool_a, ids_a, run_id="run-a")
    batch_b = make_manifest(tmp_path / "batch-b", pool_b, ids_b, run_id="run-b")
    assert list(push(batch_a, settings, workspace=ws_a).pushed) == ids_a
    first_b = push(batch_b, settings, workspace=ws_b)
    assert list(first_b.pushed) == ids_b and first_b.existing == ()
    for ws, m, ids in ((ws_a, batch_a, ids_a), (ws_b, batch_b, ids_b)):  # retries make no second task
        again = push(m, settings, workspace=ws)
        assert again.pushed == () and list(again.existing) == ids
    tasks = ls_env.tasks(project)
    per_pool = collections.Counter((t["data"]["alscale_id"], t["data"]["alscale_pool"]) for t in tasks)
    assert per_pool == collections.Counter([(i, ws_a.pool_key) for i in ids_a] + [(i, ws_b.pool_key) for i in ids_b])
    assert all(t["meta"]["alscale_pool"] == t["data"]["alscale_pool"] for t in tasks)

    truth = {ws_a.pool_key: "cat", ws_b.pool_key: "dog"}
    for t in tasks:
        ls_env.annotate(t["id"], truth[t["data"]["alscale_pool"]])
    got_a, got_b = pull(settings, workspace=ws_a), pull(settings, workspace=ws_b)
    assert sorted((r["id"], r["label"]) for r in got_a) == [(i, "cat") for i in ids_a]
    assert sorted((r["id"], r["label"]) for r in got_b) == [(i, "dog") for i in ids_b]
    assert {r["id"]: r["label"] for r in ws_a.labeled().to_pylist()} == {i: "cat" for i in ids_a}
    assert {r["id"]: r["label"] for r in ws_b.labeled().to_pylist()} == {i: "dog" for i in ids_b}
    everything = pull(settings)  # without a workspace: every answer in the project, each with its task's pool
    assert sorted((r["pool"], r["id"], r["label"]) for r in everything) == sorted(
        [(ws_a.pool_key, i, "cat") for i in ids_a] + [(ws_b.pool_key, i, "dog") for i in ids_b])
    only_b = pull(settings, pool=str(pool_b))  # a pool named by where it lives, as select takes it
    assert sorted((r["id"], r["label"]) for r in only_b) == [(i, "dog") for i in ids_b]
    assert {r["pool"] for r in pull(settings, workspace=ws_a, pool=[str(pool_a)])} == {ws_a.pool_key}
    before = ws_a.label_log()
    with pytest.raises(ConfigError, match="Expected pool= to be the pool of workspace .* Got .*, another pool"):
        pull(settings, workspace=ws_a, pool=str(pool_b))  # pool b's answers on ids ws_a also sent must not become ws_a's
    assert ws_a.label_log().equals(before)


def test_a_push_without_a_workspace_carries_the_key_its_workspace_finds_again(ls_env, tmp_path, pool, workspace):
    """The manifest's pool and the workspace's pool are the same pool, whichever way it is spelled."""
    import os

    link = tmp_path / "through-a-link.parquet"
    os.symlink(pool, link)
    taken = set(workspace.excluded_ids().tolist())
    ids = [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist() if i not in taken][:5]
    m = make_manifest(tmp_path / "b-link", link, ids, run_id="run-link")
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    assert list(conn.push(m).pushed) == ids
    assert {t["data"]["alscale_pool"] for t in ls_env.tasks(project)} == {workspace.pool_key}
    again = conn.push(m, workspace=workspace)
    assert again.pushed == () and list(again.existing) == ids


def test_tasks_pushed_without_a_pool_key_still_count_as_there(ls_env, tmp_path, pool, workspace):
    """A task from before tasks carried a pool key matches on its id, as it did then: no second copy."""
    taken = set(workspace.excluded_ids().tolist())
    ids = [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist() if i not in taken][:4]
    project = ls_env.create_project()
    with ls_env.client() as c:
        r = c.post(f"/api/projects/{project}/import", json=[{"data": {"text": "old", "alscale_id": ids[0], "alscale_run": "old"}}])
        r.raise_for_status()
    result = push(make_manifest(tmp_path / "b-old", pool, ids, run_id="run-new"),
                  {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]}, workspace=workspace)
    assert list(result.existing) == ids[:1] and list(result.pushed) == ids[1:]
    assert _ids_per_task(ls_env.tasks(project)) == collections.Counter(ids)


def test_a_batch_pushed_to_the_wrong_project_and_then_the_right_one_takes_the_right_ones_answers(ls_env, manifest, workspace):
    """Pending keeps an id per queue: the second project's answers are this workspace's too."""
    wrong, right = ls_env.create_project(), ls_env.create_project()
    settings = {"kind": "label-studio", "url": ls_env.url, "data_columns": ["text"]}
    ids = manifest.batch.column("id").to_pylist()
    assert list(push(manifest, {**settings, "project": wrong}, workspace=workspace).pushed) == ids
    assert list(push(manifest, {**settings, "project": right}, workspace=workspace).pushed) == ids
    task = next(t for t in ls_env.tasks(right) if t["data"]["alscale_id"] == ids[0])
    ls_env.annotate(task["id"], "fox")
    got = pull({**settings, "project": right}, workspace=workspace)
    assert [(r["id"], r["label"]) for r in got] == [(ids[0], "fox")]
    assert {r["id"]: r["label"] for r in workspace.labeled().to_pylist()} == {ids[0]: "fox"}
    assert sorted(set(workspace.pending().column("id").to_pylist())) == sorted(ids[1:])


def test_an_answer_submitted_empty_and_then_given_a_label_is_recorded(ls_env, manifest, workspace, caplog):
    """The empty answer is recorded as cancelled, which ends the id's pending; the label that follows is still this workspace's."""
    project = ls_env.create_project()
    settings = {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]}
    push(manifest, settings, workspace=workspace)
    task = ls_env.tasks(project)[0]
    ident = task["data"]["alscale_id"]
    annotation = ls_env.annotate(task["id"], None)
    assert [(r["id"], r["status"]) for r in pull(settings, workspace=workspace)] == [(ident, "cancelled")]
    assert ident not in set(workspace.pending().column("id").to_pylist())
    ls_env.update_annotation(annotation["id"], "dog")
    with caplog.at_level("WARNING"):
        got = pull(settings, workspace=workspace)
    assert [(r["id"], r["label"]) for r in got] == [(ident, "dog")]
    assert {r["id"]: r["label"] for r in workspace.labeled().to_pylist()} == {ident: "dog"}
    assert "label record(s)" not in caplog.text


def test_one_batch_in_two_projects_takes_each_projects_answers_and_lists_the_disagreement(ls_env, manifest, workspace, caplog):
    first, second = ls_env.create_project(), ls_env.create_project()
    settings = {"kind": "label-studio", "url": ls_env.url, "data_columns": ["text"]}
    ident = manifest.batch.column("id").to_pylist()[0]
    for project in (first, second):
        push(manifest, {**settings, "project": project}, workspace=workspace)
    task_of = {p: next(t["id"] for t in ls_env.tasks(p) if t["data"]["alscale_id"] == ident) for p in (first, second)}
    ls_env.annotate(task_of[first], "cat")
    pull({**settings, "project": first}, workspace=workspace)
    ls_env.annotate(task_of[second], "dog")  # answered in the second project after the first one's answer was pulled
    with caplog.at_level("WARNING"):
        got = pull({**settings, "project": second}, workspace=workspace)
    assert [(r["id"], r["label"]) for r in got] == [(ident, "dog")]
    assert "label record(s)" not in caplog.text
    assert {r["id"]: r["label"] for r in workspace.labeled().to_pylist()} == {ident: "dog"}  # the latest
    (found,) = workspace.disagreements()
    assert found["id"] == ident and found["used"] == "dog"
    assert [(label, source) for label, _, source in found["labels"]] == [("cat", f"label-studio:{first}@{ls_env.url}"),
                                                                               ("dog", f"label-studio:{second}@{ls_env.url}")]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_a_push_stopped_while_a_chunk_is_in_flight_loses_no_answer(ls_env, tmp_path, pool, workspace, sig):
    """The chunk in flight reaches Label Studio, the push dies before it records it as pending: its answers are still taken."""
    import os
    import signal
    import subprocess
    import sys

    free = [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist() if i not in set(workspace.excluded_ids().tolist())]
    ids = free[:12]
    m = make_manifest(tmp_path / "b", pool, ids, run_id="run-stopped")
    project = ls_env.create_project()
    proxy = _SlowImportProxy(ls_env.url, delay=0, hold_after=1)  # chunk 1 goes through; chunk 2 is imported, its answer held
    config = tmp_path / "queue.toml"
    config.write_text(f'[queue]\nurl = "{proxy.url}"\nproject = {project}\ndata_columns = ["text"]\nchunk_size = 5\n')
    env = dict(os.environ, LABEL_STUDIO_API_KEY=ls_env.token, PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "alscale", "push", str(m.path), "-w", str(workspace.path), "--config", str(config)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while len(ls_env.tasks(project)) < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(ls_env.tasks(project)) == 10 and proxy.imports == 2 and proc.poll() is None
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=60)
        pending = workspace.pending().column("id").to_pylist()
        assert sorted(pending) == sorted(ids[:5])  # the chunk in flight reached Label Studio but is not pending
        if sig == "SIGINT":
            assert proc.returncode == 130 and "alscale: interrupted" in out, out
            assert f"of batch run-stopped's 12 tasks, 5 are in label-studio:{project}@{proxy.url} and recorded as pending" in out, out
            assert "Push again to complete the batch" in out
        by_id = {t["data"]["alscale_id"]: t["id"] for t in ls_env.tasks(project)}
        ls_env.annotate(by_id[ids[1]], "cat")
        ls_env.annotate(by_id[ids[6]], "fox")  # a task of the chunk in flight
        # pulled from the server the push went to: the same URL (a server under two URLs is two queues)
        settings = {"kind": "label-studio", "url": proxy.url, "project": project, "data_columns": ["text"]}
        pull(settings, workspace=workspace)
        assert {r["id"]: r["label"] for r in workspace.labeled().to_pylist()} == {ids[1]: "cat", ids[6]: "fox"}
        # pushing again completes the batch: one task per id, every unanswered one pending
        proxy.hold_after = None  # the link is fast again
        again = push(m, settings, workspace=workspace)
    finally:
        proxy.close()
    assert sorted(again.pushed) == sorted(ids[10:]) and sorted(again.existing) == sorted(ids[:10])
    assert _ids_per_task(ls_env.tasks(project)) == collections.Counter(ids)
    assert sorted(workspace.pending().column("id").to_pylist()) == sorted(set(ids) - {ids[1], ids[6]})


def test_a_personal_access_token_outlives_the_access_tokens_it_is_exchanged_for(ls_env, manifest, workspace, monkeypatch):
    """Label Studio's access tokens live 5 minutes: a long run with a PAT exchanges it again when one is refused."""
    import httpx

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_env.personal_access_token())
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    expired = ls_env.expired_access_token()  # signed by the server's key, its lifetime over
    assert httpx.get(f"{ls_env.url}/api/projects/{project}/", headers={"Authorization": f"Bearer {expired}"}).status_code == 401

    def expire():  # as 5 minutes after the last exchange
        conn._http().headers["Authorization"] = f"Bearer {expired}"

    expire()
    assert len(conn.push(manifest, workspace=workspace).pushed) == 30
    task = ls_env.tasks(project)[0]
    ls_env.annotate(task["id"], "cat")
    expire()
    assert [(r["id"], r["label"]) for r in conn.pull(workspace=workspace)] == [(task["data"]["alscale_id"], "cat")]
    hook = conn.register_webhook(f"http://127.0.0.1:{free_port()}/webhook", secret="s3cret")
    expire()
    conn.delete_webhook(hook)  # what `listen` does at SIGTERM
    with ls_env.client() as c:
        assert c.get("/api/webhooks/", params={"project": project}).json() == []


def test_pull_warns_of_a_deleted_annotation_and_a_deleted_pending_task(ls_env, manifest, workspace, caplog):
    project = ls_env.create_project()
    settings = {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]}
    push(manifest, settings, workspace=workspace)
    first, second = ls_env.tasks(project)[:2]
    annotation = ls_env.annotate(first["id"], "cat")
    pull(settings, workspace=workspace)
    with ls_env.client() as c:
        assert c.delete(f"/api/annotations/{annotation['id']}/").status_code == 204
        assert c.delete(f"/api/tasks/{second['id']}/").status_code == 204
    with caplog.at_level("WARNING"):
        pull(settings, workspace=workspace)
    assert (f"1 label(s) taken from label-studio:{project}@{ls_env.url} are of annotations no longer in the project (deleted there), "
            f"e.g. id {first['data']['alscale_id']!r}") in caplog.text
    assert (f"1 id(s) pending in label-studio:{project}@{ls_env.url} have no task in the project any more (deleted there), "
            f"e.g. id {second['data']['alscale_id']!r}; they stay pending") in caplog.text


def test_pull_needs_the_project_and_counts_only_what_it_recorded(ls_env, manifest, workspace):
    args = ["-w", str(workspace.path), "--url", ls_env.url]
    res = CliRunner().invoke(main, ["pull", *args])
    assert res.exit_code == 2 and "alscale: error: --project is required with --url" in res.output, res.output
    project = ls_env.create_project()
    push(manifest, {"kind": "label-studio", "url": ls_env.url, "project": project, "data_columns": ["text"]}, workspace=workspace)
    choices = "".join(f'<Choice value="{c}"/>' for c in [*CLASSES, "wolf"])  # a choice added to the project later
    with ls_env.client() as c:
        c.patch(f"/api/projects/{project}/", json={"label_config": f'<View><Text name="text" value="$text"/><Choices name="label" '
                                                                 f'toName="text" choice="single">{choices}</Choices></View>'}).raise_for_status()
    first, second = ls_env.tasks(project)[:2]
    ls_env.annotate(first["id"], "dog")
    ls_env.annotate(second["id"], "wolf")
    res = CliRunner().invoke(main, ["pull", *args, "--project", str(project)])
    assert res.exit_code == 0 and "pulled 1 annotation: 1 labeled, 0 skipped, 0 cancelled; 1 new or changed" in res.output, res.output


def test_pull_labels_skips_and_updates(ls_env, manifest, workspace):
    project = ls_env.create_project()
    settings = {"kind": "label-studio", "url": ls_env.url, "project": project}
    push(manifest, {**settings, "data_columns": ["text"]}, workspace=workspace)
    tasks = sorted(ls_env.tasks(project), key=lambda t: t["id"])
    truth = {}
    for i, t in enumerate(tasks[:6]):
        ls_env.annotate(t["id"], CLASSES[i % 3])
        truth[t["data"]["alscale_id"]] = CLASSES[i % 3]
    skipped = tasks[6]["data"]["alscale_id"]
    ls_env.annotate(tasks[6]["id"], None, skip=True)
    empty = tasks[7]["data"]["alscale_id"]
    ls_env.annotate(tasks[7]["id"], None)

    records = pull(settings, workspace=workspace)
    statuses = {r["id"]: r["status"] for r in records}
    assert statuses == {**{i: "labeled" for i in truth}, skipped: "skipped", empty: "cancelled"}
    assert all(r["label"] is None for r in records if r["status"] != "labeled")
    labeled = {r["id"]: r["label"] for r in workspace.labeled().to_pylist() if r["status"] == "labeled"}
    assert labeled == truth
    # answered ids left the pending table; the rest are still pending, in Label Studio too
    answered = set(truth) | {skipped, empty}
    assert set(workspace.pending().column("id").to_pylist()) == set(manifest.batch.column("id").to_pylist()) - answered
    conn = LabelStudioConnector(ls_env.url, project)
    assert set(conn.pending()) == set(manifest.batch.column("id").to_pylist()) - answered

    # pulling again records nothing new; an updated annotation replaces the label
    assert workspace.record_labels(conn.pull()) == 0
    first = next(iter(truth))
    ann = next(a for t in ls_env.tasks(project) if t["data"]["alscale_id"] == first for a in t["annotations"])
    new_label = next(c for c in CLASSES if c != truth[first])
    ls_env.update_annotation(ann["id"], new_label)
    conn.pull(workspace=workspace)
    assert {r["id"]: r["label"] for r in workspace.labeled().to_pylist()}[first] == new_label


def test_bad_inputs_fail_clearly_and_record_nothing(ls_env, manifest, workspace, monkeypatch):
    project = ls_env.create_project()
    wrong_classes = ls_env.create_project(classes=["cat", "dog", "wolf"])
    cases = [
        ({"project": project}, {"LABEL_STUDIO_API_KEY": "0" * 40}, QueueAuthError, "refused with HTTP 401"),
        ({"project": 987654}, {}, QueueError, "987654, which does not exist"),
        ({"project": wrong_classes}, {}, QueueError, "missing ['fox']; not in the model ['wolf']"),
        ({"project": project, "url": f"http://127.0.0.1:{free_port()}", "retries": 1, "backoff": 0.01}, {},
         QueueUnavailableError, "failed after 2 attempts"),
        ({"project": project, "token_env": "ALSCALE_NO_SUCH_TOKEN"}, {}, QueueAuthError, "ALSCALE_NO_SUCH_TOKEN"),
        ({"project": project, "data_columns": []}, {}, QueueError, "reads ['$text'] from each task"),
    ]
    for settings, env, error, words in cases:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(error) as info:
            push(manifest, {"kind": "label-studio", "url": ls_env.url, "data_columns": ["text"], **settings}, workspace=workspace)
        assert words in str(info.value)
        assert ls_env.token not in str(info.value) and "0" * 40 not in str(info.value)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_env.token)
    assert workspace.pending().num_rows == 0
    assert ls_env.tasks(project) == [] and ls_env.tasks(wrong_classes) == []


def test_cli_push_pull_and_exit_code_2(ls_env, manifest, workspace):
    project = ls_env.create_project()
    runner = CliRunner()
    args = ["--url", ls_env.url, "--project", str(project), "-w", str(workspace.path)]
    res = runner.invoke(main, ["push", str(manifest.path), *args, "--data-column", "text"])
    assert res.exit_code == 0, res.output
    assert "pushed 30 new, 0 already there" in res.output
    res = runner.invoke(main, ["push", str(manifest.path), *args, "--data-column", "text"])
    assert res.exit_code == 0 and "pushed 0 new, 30 already there" in res.output
    task = ls_env.tasks(project)[0]
    ls_env.annotate(task["id"], "fox")
    res = runner.invoke(main, ["pull", *args])
    assert res.exit_code == 0 and "pulled 1 annotation: 1 labeled" in res.output
    assert workspace.labeled().to_pylist()[0]["label"] == "fox"

    before = workspace.pending().num_rows
    bad = runner.invoke(main, ["push", str(manifest.path), "--url", ls_env.url, "--project", "424242", "-w", str(workspace.path)])
    assert bad.exit_code == 2 and "alscale: error:" in bad.output and "424242" in bad.output
    assert workspace.pending().num_rows == before


@pytest.mark.slow
def test_server_killed_mid_import_then_push_again_gives_exactly_one_task_each(ls_env, tmp_path, workspace):
    n = 3000
    pool = write_pool(tmp_path / "big.parquet", n)
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()
    m = make_manifest(tmp_path / "big", pool, ids, run_id="run-big")
    project = ls_env.create_project()
    from alscale.loop.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws-big", pool=pool, classes=CLASSES, settings={"eval_size": 10, "stop_set_size": 10, "initial_size": 10})
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"], chunk_size=100, retries=1, backoff=0.05)
    outcome = {}

    def run():
        try:
            outcome["result"] = conn.push(m, workspace=ws)
        except QueueError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while ws.pending().num_rows < 300 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    ls_env.kill()
    thread.join(timeout=120)
    assert isinstance(outcome.get("error"), QueueUnavailableError), outcome
    recorded = set(ws.pending().column("id").to_pylist())
    assert 300 <= len(recorded) < n

    ls_env.start()
    in_ls = _ids_per_task(ls_env.tasks(project))
    assert recorded <= set(in_ls)  # pending holds only what reached Label Studio
    result = LabelStudioConnector(ls_env.url, project, data_columns=["text"], chunk_size=500).push(m, workspace=ws)
    assert result.total == n
    assert _ids_per_task(ls_env.tasks(project)) == collections.Counter(ids)
    assert sorted(ws.pending().column("id").to_pylist()) == sorted(ids)


class _SlowImportProxy:
    """A reverse proxy in front of the real server that holds each import ``delay`` seconds before passing it on
    (``delay=None``: never passes it on), as a busy proxy or a slow server does; imports after the first
    ``unavailable_after`` get HTTP 503, as from a server that went away; the answers of imports after the first
    ``hold_after`` are held back (30 s) once the server has imported them, as on a slow link."""

    def __init__(self, upstream: str, delay: float | None, *, unavailable_after: int | None = None, hold_after: int | None = None):
        import httpx
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.imports = 0
        self.hold_after = hold_after  # may be changed while it runs (None: hold no answer back any more)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?")[0].endswith("/import"):
                    proxy.imports += 1
                    if unavailable_after is not None and proxy.imports > unavailable_after:  # the server went away
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if delay is None:
                        time.sleep(30)  # the client gives up long before
                        return
                    time.sleep(delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                r = httpx.request(self.command, upstream + self.path, headers=headers, content=body, timeout=120)
                if proxy.hold_after is not None and self.path.split("?")[0].endswith("/import") and proxy.imports > proxy.hold_after:
                    time.sleep(30)  # imported upstream; the client is stopped before it hears so
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PATCH = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_an_import_whose_answer_is_late_is_waited_for_not_sent_twice(ls_env, tmp_path, pool, workspace):
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:12]
    m = make_manifest(tmp_path / "b", pool, ids, run_id="run-late")
    project = ls_env.create_project()
    proxy = _SlowImportProxy(ls_env.url, delay=2.5)  # past the client's 1 s timeout
    try:
        conn = LabelStudioConnector(proxy.url, project, data_columns=["text"], chunk_size=5, timeout=1.0, backoff=0.3)
        result = conn.push(m, workspace=workspace)
    finally:
        proxy.close()
    assert sorted(result.pushed) == sorted(ids) and proxy.imports == 3  # one request per chunk, none repeated
    assert _ids_per_task(ls_env.tasks(project)) == collections.Counter(ids)
    assert sorted(workspace.pending().column("id").to_pylist()) == sorted(ids)


def test_an_import_that_never_arrives_is_not_sent_again_and_not_pending(ls_env, tmp_path, pool, workspace):
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:4]
    m = make_manifest(tmp_path / "b", pool, ids, run_id="run-lost")
    project = ls_env.create_project()
    proxy = _SlowImportProxy(ls_env.url, delay=None)
    try:
        conn = LabelStudioConnector(proxy.url, project, data_columns=["text"], timeout=1.0, backoff=0.3)
        with pytest.raises(QueueUnavailableError, match="did not appear within 5 s.*push again later"):
            conn.push(m, workspace=workspace)
    finally:
        proxy.close()
    assert proxy.imports == 1 and ls_env.tasks(project) == [] and workspace.pending().num_rows == 0
    # pushing again (directly, the server answering at once) imports each task once
    assert sorted(LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(m, workspace=workspace).pushed) == sorted(ids)
    assert _ids_per_task(ls_env.tasks(project)) == collections.Counter(ids)


def test_prediction_score_orders_by_rank():
    k = 9
    scores = [prediction_score(r, k) for r in range(1, k + 1)]
    assert scores == sorted(scores) and scores[0] == 0.0 and scores[-1] == 1.0
    assert prediction_score(1, 1) == 0.0


def _seed_manifest(out, pool, ids, run_id="seed-ws-0"):
    """A batch like round 000's seed set: no model, so no classes and no predictions."""
    import pyarrow as pa

    from alscale.manifest import write_manifest

    m = make_manifest(out.with_name(out.name + "-model"), pool, ids, run_id=run_id)
    batch = m.batch
    for name, kind in (("predicted_class", pa.string()), ("predicted_index", pa.int32()), ("confidence", pa.float32())):
        batch = batch.set_column(batch.schema.get_field_index(name), name, pa.nulls(len(ids), kind))
    return write_manifest(out, batch, {**m.data, "model": None, "strategy": {"name": "seed-random", "params": {}}}, force=True)


def test_a_seed_batch_is_checked_against_the_workspaces_classes(ls_env, tmp_path, pool, workspace):
    """Round 000's manifest names no model classes: the workspace's classes are what its answers must be."""
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:6]
    ids = [i for i in ids if i not in set(workspace.excluded_ids().tolist())]
    seed = _seed_manifest(tmp_path / "seed", pool, ids)
    for classes, words in ((["cat", "dog"], "classes ['cat', 'dog', 'fox']: missing ['fox']."),
                           (["Cat", "Dog", "Fox"], "missing ['cat', 'dog', 'fox']; not in the workspace ['Cat', 'Dog', 'Fox']")):
        project = ls_env.create_project(classes=classes)
        with pytest.raises(QueueError, match="do not match the workspace classes") as info:
            LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(seed, workspace=workspace)
        assert words in str(info.value)
        assert ls_env.tasks(project) == [] and workspace.pending().num_rows == 0
    project = ls_env.create_project()  # cat, dog, fox: taken, without pre-annotations
    assert list(LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(seed, workspace=workspace).pushed) == ids
    assert all(not t["predictions"] for t in ls_env.tasks(project))


def test_a_seed_batch_without_a_workspace_or_its_classes_is_not_checked(ls_env, tmp_path, pool):
    from alscale.loop.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws-any", pool=pool, settings={"eval_size": 10, "stop_set_size": 10, "initial_size": 10})
    ids = [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist() if i not in set(ws.excluded_ids().tolist())][:3]
    seed = _seed_manifest(tmp_path / "seed", pool, ids)
    for workspace in (None, ws):  # no workspace; a workspace that takes any label
        project = ls_env.create_project(classes=["cat", "dog"])
        assert len(LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(seed, workspace=workspace).pushed) == 3


@pytest.mark.parametrize("path", ["/projects/2", "/projects/2/data?tab=1", "/projects/", "/api/projects/2", "/api", "/ls/projects/2"])
def test_a_page_or_api_address_as_the_base_url_is_refused(path):
    from alscale.exceptions import ConfigError

    base = "http://127.0.0.1:8080" + ("/ls" if path.startswith("/ls") else "")
    with pytest.raises(ConfigError, match=f"Expected the Label Studio base URL \\(e.g. {base}\\)\\. Got "):
        LabelStudioConnector("http://127.0.0.1:8080" + path, 2)
    LabelStudioConnector(base, 2)  # the base itself, under a prefix or not, is taken
    LabelStudioConnector(base + "/", 2)


def test_the_cli_refuses_a_project_page_as_the_url_before_any_request(workspace, manifest, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0" * 40)
    url = f"http://127.0.0.1:{free_port()}/projects/2"  # nothing listens there: a request would fail otherwise
    for args in (["push", str(manifest.path), "--data-column", "text"], ["pull"]):
        res = CliRunner().invoke(main, [*args, "-w", str(workspace.path), "--url", url, "--project", "2"])
        assert res.exit_code == 2 and "alscale: error: Expected the Label Studio base URL (e.g. http://127.0.0.1:" in res.output, res.output
        assert "give the base URL and the project id separately" in res.output


def test_the_data_column_hint_names_a_pool_column(ls_env, manifest, workspace):
    """--data-column sentence fails where the pool has no 'sentence' column: the hint maps the key onto a pool column."""
    with ls_env.client() as c:
        config = ('<View><Text name="s" value="$sentence"/><Choices name="label" toName="s">'
                  + "".join(f'<Choice value="{k}"/>' for k in CLASSES) + "</Choices></View>")
        project = c.post("/api/projects/", json={"title": "sentences", "label_config": config}).json()["id"]
    with pytest.raises(QueueError) as info:
        LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(manifest, workspace=workspace)
    assert "reads ['$sentence'] from each task: expected data_columns naming them (e.g. --data-column sentence=COLUMN" in str(info.value)
    assert "--data-column sentence)" not in str(info.value)
    pushed = LabelStudioConnector(ls_env.url, project, data_columns=["sentence=text"]).push(manifest, workspace=workspace)
    assert len(pushed.pushed) == 30  # what the hint says works


def test_a_push_cut_off_half_way_says_what_it_imported_and_what_was_there(ls_env, tmp_path, pool, workspace):
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:15]
    project = ls_env.create_project()
    LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(make_manifest(tmp_path / "b0", pool, ids[:5], run_id="run-0"),
                                                                        workspace=workspace)
    proxy = _SlowImportProxy(ls_env.url, delay=0, unavailable_after=1)  # the first chunk goes through, then the server is gone
    try:
        conn = LabelStudioConnector(proxy.url, project, data_columns=["text"], chunk_size=5, retries=0)
        with pytest.raises(QueueUnavailableError) as info:
            conn.push(make_manifest(tmp_path / "b1", pool, ids, run_id="run-1"), workspace=workspace)
    finally:
        proxy.close()
    assert ("Of the batch's 15 tasks, this push imported 5 before this failure and 5 were in the project already; "
            "both are recorded as pending; push again to import the rest.") in str(info.value)
    # the first 5 are pending twice: as sent to the server's URL and to the proxy's (a server under two URLs is two queues)
    assert sorted(set(workspace.pending().column("id").to_pylist())) == sorted(ids[:10])
