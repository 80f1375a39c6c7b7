"""The webhook receiver against a real Label Studio: webhooks, secrets, a killed receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from alscale.queues import LabelStudioConnector, WebhookListener

from .queue_support import CLASSES, free_port

pytestmark = pytest.mark.labelstudio

SECRET = "webhook-secret-for-tests"


def _labels(ws):
    return {r["id"]: r["label"] for r in ws.labeled().to_pylist() if r["status"] == "labeled"}


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_webhooks_record_labels_and_reject_missing_secret(ls_env, manifest, workspace):
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    conn.push(manifest, workspace=workspace)
    fired = []
    with WebhookListener(workspace, secret=SECRET, connector=conn, reconcile_every=None,
                         next_round_after=3, on_next_round=fired.append) as listener:
        hook_id = conn.register_webhook(listener.url, secret=SECRET)
        assert conn.register_webhook(listener.url, secret=SECRET) == hook_id  # idempotent
        tasks = sorted(ls_env.tasks(project), key=lambda t: t["id"])
        truth = {}
        for i, t in enumerate(tasks[:3]):
            ann = ls_env.annotate(t["id"], CLASSES[i])  # Label Studio calls the webhook before answering
            truth[t["data"]["alscale_id"]] = CLASSES[i]
            assert _labels(workspace) == truth
        assert _wait(lambda: fired == [3])
        ls_env.update_annotation(ann["id"], "cat")  # ANNOTATION_UPDATED
        truth[tasks[2]["data"]["alscale_id"]] = "cat"
        assert _labels(workspace) == truth

        before = workspace.label_log().num_rows
        payload = {"action": "ANNOTATION_CREATED", "annotation": {"id": 999999, "result": [], "was_cancelled": True},
                   "task": {"id": 1, "data": {"alscale_id": tasks[5]["data"]["alscale_id"]}}}
        for headers in ({}, {"X-Alscale-Secret": "wrong"}):
            r = httpx.post(listener.url, json=payload, headers=headers)
            assert r.status_code == 401
        assert workspace.label_log().num_rows == before
        r = httpx.post(listener.url, json=payload, headers={"X-Alscale-Secret": SECRET})
        assert r.status_code == 200 and r.json() == {"recorded": 1}
        assert workspace.label_log().num_rows == before + 1


def test_reconcile_takes_only_what_this_workspace_sent(ls_env, tmp_path, pool, workspace, caplog):
    """A project shared by two workspaces of one pool: the reconcile pull, like a webhook, leaves the other's answers out."""
    import pyarrow.parquet as pq

    from alscale.loop.workspace import Workspace

    from .queue_support import make_manifest

    twin = Workspace.create(tmp_path / "ws-twin", pool=pool, classes=CLASSES, settings={"eval_size": 10, "stop_set_size": 10, "initial_size": 10})
    taken = set(workspace.excluded_ids().tolist()) | set(twin.excluded_ids().tolist())
    free = [i for i in pq.read_table(pool, columns=["id"]).column("id").to_pylist() if i not in taken]
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    conn.push(make_manifest(tmp_path / "mine", pool, free[:4], run_id="run-mine"), workspace=workspace)
    conn.push(make_manifest(tmp_path / "theirs", pool, free[4:8], run_id="run-theirs"), workspace=twin)
    for t in ls_env.tasks(project):
        ls_env.annotate(t["id"], "dog")
    listener = WebhookListener(workspace, secret=SECRET, connector=conn, reconcile_every=None)
    try:
        with caplog.at_level("INFO", logger="alscale.queues"):
            assert listener.reconcile() == 4
        assert f"pulled 4 answer(s) to this workspace's tasks from {conn.name}: 4 new or changed" in caplog.text
    finally:
        listener.server.server_close()
    assert sorted(workspace.labeled().column("id").to_pylist()) == sorted(free[:4])


def test_webhooks_and_reconcile_leave_out_another_pools_task_with_the_same_id(ls_env, tmp_path):
    """Two pools hold id 1003: a webhook or a reconcile pull for one pool's task never labels the other's."""
    from alscale.loop.workspace import Workspace

    from .queue_support import make_manifest, write_pool

    pools = [write_pool(tmp_path / f"pool-{name}.parquet", 40) for name in "ab"]
    ws_a, ws_b = (Workspace.create(tmp_path / f"ws-{name}", pool=p, classes=CLASSES,
                                   settings={"eval_size": 4, "stop_set_size": 4, "initial_size": 4}) for name, p in zip("ab", pools))
    taken = set(ws_a.excluded_ids().tolist()) | set(ws_b.excluded_ids().tolist())
    ids = [i for i in range(1000, 1040) if i not in taken][:3]
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    conn.push(make_manifest(tmp_path / "batch-a", pools[0], ids, run_id="run-a"), workspace=ws_a)
    conn.push(make_manifest(tmp_path / "batch-b", pools[1], ids, run_id="run-b"), workspace=ws_b)
    of_b = [t for t in ls_env.tasks(project) if t["data"]["alscale_pool"] == ws_b.pool_key]
    assert sorted(t["data"]["alscale_id"] for t in of_b) == ids
    with WebhookListener(ws_a, secret=SECRET, connector=conn, reconcile_every=None) as listener:
        conn.register_webhook(listener.url, secret=SECRET)
        for t in of_b:
            ls_env.annotate(t["id"], "fox")  # Label Studio calls the webhook before answering
        assert _labels(ws_a) == {}
        payload = {"action": "ANNOTATION_CREATED", "annotation": {"id": 777777, "result": [], "was_cancelled": True},
                   "task": {"id": of_b[0]["id"], "data": of_b[0]["data"]}}
        r = httpx.post(listener.url, json=payload, headers={"X-Alscale-Secret": SECRET})
        assert r.status_code == 200 and "another pool" in r.json()["ignored"]
        assert listener.reconcile() == 0
        assert ws_a.label_log().num_rows == 0
        of_a = [t for t in ls_env.tasks(project) if t["data"]["alscale_pool"] == ws_a.pool_key]
        ls_env.annotate(of_a[0]["id"], "cat")
        assert _labels(ws_a) == {of_a[0]["data"]["alscale_id"]: "cat"}
    for t in of_a[1:]:
        ls_env.annotate(t["id"], "dog")
    listener = WebhookListener(ws_b, secret=SECRET, connector=conn, reconcile_every=None)
    try:
        assert listener.reconcile() == 3
    finally:
        listener.server.server_close()
    assert _labels(ws_b) == {i: "fox" for i in ids}


def _listen(ls_env, project, workspace, port):
    env = {**os.environ, "LABEL_STUDIO_API_KEY": ls_env.token, "ALSCALE_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alscale", "listen", "-w", str(workspace.path), "--url", ls_env.url, "--project", str(project),
         "--port", str(port), "--register", "--reconcile-every", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ok = _wait(lambda: proc.poll() is None and _up(port), timeout=60)
    assert ok, proc.communicate(timeout=5)[0].decode()[-2000:] if proc.poll() is not None else "listen did not start"
    return proc


def _up(port):
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_killed_listener_loses_no_label_after_reconcile(ls_env, manifest, workspace):
    project = ls_env.create_project()
    LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(manifest, workspace=workspace)
    tasks = sorted(ls_env.tasks(project), key=lambda t: t["id"])
    port = free_port()
    proc = _listen(ls_env, project, workspace, port)
    try:
        ls_env.annotate(tasks[0]["id"], "dog")
        assert _wait(lambda: _labels(workspace) == {tasks[0]["data"]["alscale_id"]: "dog"})
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        ls_env.annotate(tasks[1]["id"], "fox")  # its webhook finds nobody listening
        ls_env.annotate(tasks[2]["id"], None, skip=True)
        assert tasks[1]["data"]["alscale_id"] not in _labels(workspace)
        proc = _listen(ls_env, project, workspace, port)  # the reconcile pull at start catches up
        want = {tasks[0]["data"]["alscale_id"]: "dog", tasks[1]["data"]["alscale_id"]: "fox"}
        assert _wait(lambda: _labels(workspace) == want)
        statuses = {r["id"]: r["status"] for r in workspace.labeled().to_pylist()}
        assert statuses[tasks[2]["data"]["alscale_id"]] == "skipped"
        ls_env.annotate(tasks[3]["id"], "cat")  # and webhooks flow again
        assert _wait(lambda: _labels(workspace).get(tasks[3]["data"]["alscale_id"]) == "cat")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_listen_without_secret_exits_2(ls_env, workspace, monkeypatch):
    from click.testing import CliRunner

    from alscale.cli import main

    monkeypatch.delenv("ALSCALE_WEBHOOK_SECRET", raising=False)
    res = CliRunner().invoke(main, ["listen", "-w", str(workspace.path), "--url", ls_env.url, "--project", "1"])
    assert res.exit_code == 2 and "ALSCALE_WEBHOOK_SECRET" in res.output


def test_register_on_every_interface_needs_the_public_url(workspace, monkeypatch):
    """http://0.0.0.0:PORT/webhook is no address Label Studio can call: refused before anything is registered."""
    from click.testing import CliRunner

    from alscale.cli import main

    monkeypatch.setenv("ALSCALE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0" * 40)
    for host in ("0.0.0.0", "::"):
        res = CliRunner().invoke(main, ["listen", "-w", str(workspace.path), "--url", f"http://127.0.0.1:{free_port()}",
                                        "--project", "1", "--host", host, "--register-only"])
        assert res.exit_code == 2 and "needs --public-url" in res.output, res.output


def test_register_only_refuses_port_0_and_checks_the_project_like_a_start(ls_env, workspace, monkeypatch):
    from click.testing import CliRunner

    from alscale.cli import main

    monkeypatch.setenv("ALSCALE_WEBHOOK_SECRET", SECRET)
    project = ls_env.create_project()
    args = ["listen", "-w", str(workspace.path), "--url", ls_env.url, "--register-only"]
    res = CliRunner().invoke(main, [*args, "--project", str(project), "--port", "0"])
    assert res.exit_code == 2 and "--register-only needs the port Label Studio will call" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    with ls_env.client() as c:  # no <Choices>: a start fails on it, so no webhook may point here
        bare = c.post("/api/projects/", json={"title": "no choices", "label_config": '<View><Text name="text" value="$text"/></View>'}).json()["id"]
    res = CliRunner().invoke(main, [*args, "--project", str(bare), "--port", str(free_port())])
    assert res.exit_code == 2 and "Expected exactly one <Choices> control" in res.output, res.output
    with ls_env.client() as c:
        assert c.get("/api/webhooks/", params={"project": project}).json() == []
        assert c.get("/api/webhooks/", params={"project": bare}).json() == []


def test_only_an_ids_first_label_counts_toward_the_next_round(ls_env, manifest, workspace):
    """Skips, edits of an answer and a second annotation of a labeled task are no new labels."""
    project = ls_env.create_project()
    conn = LabelStudioConnector(ls_env.url, project, data_columns=["text"])
    conn.push(manifest, workspace=workspace)
    tasks = sorted(ls_env.tasks(project), key=lambda t: t["id"])
    fired = []
    with WebhookListener(workspace, secret=SECRET, connector=conn, reconcile_every=None,
                         next_round_after=2, on_next_round=fired.append) as listener:
        conn.register_webhook(listener.url, secret=SECRET)
        ls_env.annotate(tasks[0]["id"], None, skip=True)
        ls_env.annotate(tasks[1]["id"], None, skip=True)
        ann = ls_env.annotate(tasks[2]["id"], "cat")  # the first new label
        ls_env.update_annotation(ann["id"], "dog")  # an edit
        ls_env.annotate(tasks[2]["id"], "fox")  # a second annotation of the same task
        assert _labels(workspace) == {tasks[2]["data"]["alscale_id"]: "fox"}
        time.sleep(0.5)
        assert fired == []
        ls_env.annotate(tasks[0]["id"], "cat")  # a skipped id labeled at last: the second new label
        assert _wait(lambda: fired == [2])
        time.sleep(0.3)
        assert fired == [2]


def _start_listen(ls_env, project, workspace, *args):
    """``alscale listen`` in a process of its own; returns it and a list its output lines are read into."""
    import threading

    env = {**os.environ, "LABEL_STUDIO_API_KEY": ls_env.token, "ALSCALE_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alscale", "listen", "-w", str(workspace.path), "--url", ls_env.url, "--project", str(project),
         "--reconcile-every", "0", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C reaches it even from a background job
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    # the line logged once the start's reconcile pull is done and requests are served
    ok = _wait(lambda: proc.poll() is not None or any("listening for Label Studio webhooks" in line for line in lines), timeout=60)
    assert ok and proc.poll() is None, "".join(lines)[-2000:]
    return proc, lines


def _stop(proc, lines, sig=signal.SIGTERM):
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.2)  # the reader thread takes the last lines
    return "".join(lines)


def _hooks(ls_env, project):
    with ls_env.client() as c:
        return [(h["id"], h["url"]) for h in c.get("/api/webhooks/", params={"project": project}).json() if h.get("project") == project]


def test_listen_logs_one_line_per_webhook_and_no_http_request_lines(ls_env, manifest, workspace):
    project = ls_env.create_project()
    LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(manifest, workspace=workspace)
    tasks = sorted(ls_env.tasks(project), key=lambda t: t["id"])
    port = free_port()
    proc, lines = _start_listen(ls_env, project, workspace, "--port", str(port), "--register")
    try:
        ls_env.annotate(tasks[0]["id"], "dog")  # Label Studio calls the webhook before answering
        bird = {"action": "ANNOTATION_CREATED", "project": {"id": project},
                "annotation": {"id": 424242, "result": [{"type": "choices", "from_name": "label", "to_name": "text",
                                                         "value": {"choices": ["bird"]}}]},
                "task": {"id": tasks[1]["id"], "data": tasks[1]["data"]}}
        url = f"http://127.0.0.1:{port}/webhook"
        assert httpx.post(url, json=bird, headers={"X-Alscale-Secret": SECRET}).status_code == 422
        assert httpx.post(url, json=[1, 2], headers={"X-Alscale-Secret": SECRET}).status_code == 400
    finally:
        out = _stop(proc, lines)
    first, second = tasks[0]["data"]["alscale_id"], tasks[1]["data"]["alscale_id"]
    assert f"webhook ANNOTATION_CREATED for id {first!r}: recorded label 'dog'" in out, out
    assert f"webhook ANNOTATION_CREATED for id {second!r}: refused with HTTP 422 (id {second!r}: Expected a label among" in out and "'bird'" in out
    assert "webhook: refused with HTTP 400 (expected a JSON object with an 'action'" in out
    assert "HTTP Request:" not in out, out  # the reconcile pull's requests stay out of it


def test_a_stopped_listen_removes_the_webhook_it_created_and_keeps_one_it_reused(ls_env, manifest, workspace):
    """With --port 0 every run has a new URL: a webhook left behind at each stop would pile up, dead."""
    project = ls_env.create_project()
    LabelStudioConnector(ls_env.url, project, data_columns=["text"]).push(manifest, workspace=workspace)
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc, lines = _start_listen(ls_env, project, workspace, "--port", "0", "--register")
        assert len(_hooks(ls_env, project)) == 1
        out = _stop(proc, lines, sig)
        assert _hooks(ls_env, project) == [], out
        assert "removed webhook" in out
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    kept = LabelStudioConnector(ls_env.url, project).register_webhook(url, secret=SECRET)
    proc, lines = _start_listen(ls_env, project, workspace, "--port", str(port), "--register")
    out = _stop(proc, lines)
    assert _hooks(ls_env, project) == [(kept, url)], out  # found and reused: a later run at this port uses it again
    assert "removed webhook" not in out
