"""The webhook receiver's answers to malformed, foreign and oversized requests (no Label Studio needed)."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from click.testing import CliRunner

from alscale.cli import main
from alscale.exceptions import ConfigError, QueueError
from alscale.queues import LabelStudioConnector, WebhookListener

SECRET = "webhook-secret-for-tests"
HEADERS = {"X-Alscale-Secret": SECRET}
QUEUE = "label-studio:6@http://127.0.0.1:9"  # the name of project 6 at the (absent) server the tests' connectors name


def _payload(task_data, result, project=6, **annotation):
    return {"action": "ANNOTATION_CREATED", "project": {"id": project},
            "task": {"id": 1, "data": task_data}, "annotation": {"id": 77, "result": result, **annotation}}


def _choice(label):
    return [{"type": "choices", "from_name": "label", "to_name": "text", "value": {"choices": [label]}}]


@pytest.fixture
def listener(workspace):
    # a connector for project 6 that is never called: handle() needs no network
    lst = WebhookListener(workspace, secret=SECRET, connector=LabelStudioConnector("http://127.0.0.1:9", 6), port=0)
    workspace.add_pending([1003], batch_run_id="run-0001", queue=QUEUE)  # as a push to project 6 there records it
    yield lst
    lst.server.server_close()


@pytest.mark.parametrize("payload", [
    _payload({"alscale_id": 1003}, "x"),
    _payload({"alscale_id": 1003}, ["x"]),
    _payload("x", _choice("cat")),
    _payload({"alscale_id": 1003}, [{"type": "choices", "value": {"choices": {"a": 1}}}]),
    _payload({"alscale_id": 1006.7}, _choice("cat")),
])
def test_malformed_annotations_get_400_and_record_nothing(listener, workspace, payload):
    status, answer = listener.handle(HEADERS, json.dumps(payload).encode())
    assert status == 400 and "error" in answer
    assert workspace.label_log().num_rows == 0


def test_other_projects_are_ignored_and_own_project_is_recorded(listener, workspace):
    status, answer = listener.handle(HEADERS, json.dumps(_payload({"alscale_id": 1003}, _choice("fox"), project=1)).encode())
    assert status == 200 and "project 1" in answer["ignored"] and workspace.label_log().num_rows == 0
    status, answer = listener.handle(HEADERS, json.dumps(_payload({"alscale_id": 1003}, _choice("fox"))).encode())
    assert (status, answer) == (200, {"recorded": 1})
    assert [(r["id"], r["label"], r["source"]) for r in workspace.labeled().to_pylist()] == [(1003, "fox", QUEUE)]


def _raw_post(port: int, content_length: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Alscale-Secret: {SECRET}\r\n"
                     f"Content-Length: {content_length}\r\n\r\n".encode())
        return sock.recv(4096)


@pytest.mark.parametrize("content_length", ["abc", "-1"])
def test_bad_content_length_gets_400(workspace, content_length):
    with WebhookListener(workspace, secret=SECRET, port=0) as lst:
        answer = _raw_post(lst.port, content_length)
        assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
        assert httpx.get(f"http://127.0.0.1:{lst.port}/").status_code == 200  # still serving


def test_port_taken_or_out_of_range(workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(QueueError, match=f"Cannot listen on 127.0.0.1:{port}: Address already in use"):
            WebhookListener(workspace, secret=SECRET, port=port)
        res = CliRunner(env={"ALSCALE_WEBHOOK_SECRET": SECRET, "LABEL_STUDIO_API_KEY": "t"}).invoke(
            main, ["listen", "-w", str(workspace.path), "--url", "http://127.0.0.1:9", "--project", "1", "--port", str(port), "--register"])
        # the port is checked before anything is registered (the Label Studio URL is never reached)
        assert res.exit_code == 2 and "Address already in use" in res.output and "registered" not in res.output
    with pytest.raises(ConfigError, match="'port' parameter must be an int from 0 to 65535"):
        WebhookListener(workspace, secret=SECRET, port=99999)
    res = CliRunner().invoke(main, ["listen", "-w", str(workspace.path), "--url", "http://127.0.0.1:9", "--project", "1", "--port", "99999"])
    assert res.exit_code == 2 and "99999" in res.output


def test_a_late_or_replayed_webhook_never_undoes_a_newer_answer(listener, workspace):
    """Label Studio sends webhooks from threads: an annotation edited twice in quick succession can arrive newest first."""
    def post(label, updated_at, action="ANNOTATION_UPDATED"):
        payload = _payload({"alscale_id": 1003}, _choice(label), updated_at=updated_at)
        payload["action"] = action
        return listener.handle(HEADERS, json.dumps(payload).encode())

    assert post("fox", "2026-11-24T10:00:05.250000Z") == (200, {"recorded": 1})
    assert post("cat", "2026-11-24T10:00:01.000000Z", action="ANNOTATION_CREATED") == (200, {"recorded": 0})  # arrives late
    assert [(r["id"], r["label"]) for r in workspace.labeled().to_pylist()] == [(1003, "fox")]
    assert post("dog", "2026-11-24T10:00:09Z") == (200, {"recorded": 1})  # a real later edit still wins
    assert post("fox", "2026-11-24T10:00:05.250000Z") == (200, {"recorded": 0})  # the replay of an old one does not
    assert [(r["label"], r["answered_at"]) for r in workspace.label_log().to_pylist()] == [("dog", "2026-11-24T10:00:09Z")]


def test_a_request_without_the_secret_is_refused_before_its_body_is_read(workspace):
    with WebhookListener(workspace, secret=SECRET, port=0) as lst:
        with socket.create_connection(("127.0.0.1", lst.port), timeout=5) as sock:
            # headers only: a body of 16 MB is announced and never sent
            sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 16000000\r\n\r\n")
            answer = sock.recv(4096)
        assert answer.split(b"\r\n")[0].endswith(b"401 Unauthorized")
        assert httpx.get(f"http://127.0.0.1:{lst.port}/").status_code == 200  # still serving
    assert workspace.label_log().num_rows == 0


def test_the_webhook_reads_the_connectors_choices_control(workspace):
    connector = LabelStudioConnector("http://127.0.0.1:9", 6, from_name="label")
    lst = WebhookListener(workspace, secret=SECRET, connector=connector, port=0)
    workspace.add_pending([1003], batch_run_id="run-0001", queue=QUEUE)
    try:
        result = [{"type": "choices", "from_name": "sentiment", "to_name": "text", "value": {"choices": ["dog"]}}, *_choice("cat")]
        assert lst.handle(HEADERS, json.dumps(_payload({"alscale_id": 1003}, result)).encode()) == (200, {"recorded": 1})
    finally:
        lst.server.server_close()
    assert [(r["id"], r["label"]) for r in workspace.labeled().to_pylist()] == [(1003, "cat")]


@pytest.mark.parametrize("every", [-1, 0.5, float("nan"), float("inf")])
def test_reconcile_every_must_be_a_second_or_more(workspace, every):
    with pytest.raises(ConfigError, match="'reconcile_every' parameter must be at least 1 second"):
        WebhookListener(workspace, secret=SECRET, port=0, reconcile_every=every)
    res = CliRunner(env={"ALSCALE_WEBHOOK_SECRET": SECRET, "LABEL_STUDIO_API_KEY": "t"}).invoke(
        main, ["listen", "-w", str(workspace.path), "--url", "http://127.0.0.1:9", "--project", "1", "--reconcile-every", str(every)])
    assert res.exit_code == 2 and "'--reconcile-every'" in res.output


def test_a_label_for_an_id_this_workspace_did_not_send_is_ignored(listener, workspace):
    """Another workspace's task in the same project, with an id this pool holds too."""
    status, answer = listener.handle(HEADERS, json.dumps(_payload({"alscale_id": 1004}, _choice("fox"))).encode())
    assert status == 200 and answer == {"ignored": f"id 1004 was not sent to {QUEUE} by this workspace"}
    assert workspace.label_log().num_rows == 0


@pytest.mark.parametrize("secret,got", [("", "an empty one"), (5, "int"), (b"bytes", "bytes"), (None, "NoneType")])
def test_the_secret_must_be_a_non_empty_string(workspace, secret, got):
    with pytest.raises(ConfigError, match=f"Expected a non-empty webhook secret \\(a str\\). Got {got}."):
        WebhookListener(workspace, secret=secret, port=0)


@pytest.mark.parametrize("body", [b"[1,2]", b"{}", b"", b"null", b'"x"', b'{"action": 5}', b'{"task": {"id": 1}}'])
def test_a_body_that_is_not_an_object_with_an_action_gets_400(listener, workspace, body):
    status, answer = listener.handle(HEADERS, body)
    assert status == 400 and "expected a JSON object with an 'action'" in answer["error"]
    assert workspace.label_log().num_rows == 0


def test_other_label_studio_actions_are_still_ignored_with_200(listener, workspace):
    for action in ("PROJECT_UPDATED", "TASKS_CREATED", "ANNOTATIONS_DELETED"):
        assert listener.handle(HEADERS, json.dumps({"action": action, "project": {"id": 6}}).encode()) == (200, {"ignored": action})
    assert workspace.label_log().num_rows == 0


def test_each_webhook_is_logged_once_naming_its_id_and_what_became_of_it(listener, workspace, caplog):
    caplog.set_level("INFO", logger="alscale.queues")

    def lines(payload):
        caplog.clear()
        listener.handle(HEADERS, json.dumps(payload).encode())
        return [(r.levelname, r.getMessage()) for r in caplog.records]

    assert lines(_payload({"alscale_id": 1003}, _choice("bird"))) == [
        ("WARNING", "webhook ANNOTATION_CREATED for id 1003: refused with HTTP 422 (id 1003: Expected a label among the known classes "
                    "['cat', 'dog', 'fox']. Got 'bird'.)")]
    assert lines(_payload({"alscale_id": 1003}, _choice("fox"))) == [("INFO", "webhook ANNOTATION_CREATED for id 1003: recorded label 'fox'")]
    assert lines(_payload({"alscale_id": 1003}, _choice("fox"))) == [("INFO", "webhook ANNOTATION_CREATED for id 1003: already recorded (label 'fox')")]
    assert lines(_payload({"alscale_id": 1004}, _choice("dog"))) == [
        ("INFO", f"webhook ANNOTATION_CREATED for id 1004: ignored (id 1004 was not sent to {QUEUE} by this workspace)")]
    assert lines({"action": "PROJECT_UPDATED"}) == [("INFO", "webhook PROJECT_UPDATED: ignored (PROJECT_UPDATED)")]
    assert lines(_payload({"alscale_id": 1003}, [], was_cancelled=True)) == [
        ("INFO", "webhook ANNOTATION_CREATED for id 1003: recorded as skipped")]
    assert lines([1, 2]) == [("WARNING", "webhook: refused with HTTP 400 (expected a JSON object with an 'action' "
                                         "(a Label Studio webhook), got a JSON list)")]


def test_a_request_refused_before_its_body_is_read_is_logged_too(workspace, caplog):
    caplog.set_level("INFO", logger="alscale.queues")
    with WebhookListener(workspace, secret=SECRET, port=0) as lst:
        assert httpx.post(lst.url, json={"action": "ANNOTATION_CREATED"}, headers={"X-Alscale-Secret": "wrong"}).status_code == 401
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.getMessage().startswith("webhook")] == [
        ("WARNING", "webhook: refused with HTTP 401 (missing or wrong X-Alscale-Secret header)")]


def test_the_next_round_starts_after_the_line_of_the_webhook_that_made_it_due(workspace, caplog):
    fired = []
    lst = WebhookListener(workspace, secret=SECRET, connector=LabelStudioConnector("http://127.0.0.1:9", 6), port=0,
                          next_round_after=1, on_next_round=fired.append)
    workspace.add_pending([1003], batch_run_id="run-0001", queue=QUEUE)
    try:
        with caplog.at_level("INFO", logger="alscale.queues"):
            assert lst.handle(HEADERS, json.dumps(_payload({"alscale_id": 1003}, _choice("fox"))).encode()) == (200, {"recorded": 1})
    finally:
        lst.server.server_close()
    lines = [r.getMessage() for r in caplog.records]
    recorded = next(i for i, line in enumerate(lines) if "webhook ANNOTATION_CREATED for id 1003: recorded label 'fox'" in line)
    starting = next(i for i, line in enumerate(lines) if "1 new label(s): starting the next round" in line)
    assert recorded < starting
    import time

    deadline = time.monotonic() + 5
    while not fired and time.monotonic() < deadline:  # the hook runs in a thread of its own
        time.sleep(0.05)
    assert fired == [1]


def _raw(port: int, request: bytes) -> bytes:
    """The whole answer to ``request``: its headers and as many body bytes as they announce (they may come in two packets)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while True:
            chunk = sock.recv(4096)
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
            if not chunk or (_ and len(body) >= length):
                return answer


def test_a_webhook_posted_to_another_path_gets_404_and_records_nothing(workspace, caplog):
    workspace.add_pending([1003], batch_run_id="run-0001", queue="label-studio:6")
    body = json.dumps(_payload({"alscale_id": 1003}, _choice("fox"))).encode()
    with caplog.at_level("INFO", logger="alscale.queues"), WebhookListener(workspace, secret=SECRET, port=0) as lst:
        r = httpx.post(f"http://127.0.0.1:{lst.port}/definitely/not/the/webhook", content=body, headers=HEADERS)
        assert r.status_code == 404 and "expected POSTs to /webhook" in r.json()["error"]
        assert httpx.get(f"http://127.0.0.1:{lst.port}/anything").status_code == 200  # the health check is any GET, as before
        assert workspace.label_log().num_rows == 0
        assert "refused with HTTP 404 (no webhook at '/definitely/not/the/webhook'" in caplog.text
        r = httpx.post(lst.url + "?x=1", content=body, headers=HEADERS)  # the path it prints (a query string is no matter)
        assert r.status_code == 200 and r.json() == {"recorded": 1}
    assert lst.url.endswith("/webhook")


def test_a_chunked_webhook_is_told_a_content_length_is_expected(workspace):
    with WebhookListener(workspace, secret=SECRET, port=0) as lst:
        answer = _raw(lst.port, f"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Alscale-Secret: {SECRET}\r\n"
                                f"Transfer-Encoding: chunked\r\n\r\n5\r\n{{...}}\r\n0\r\n\r\n".encode())
        assert answer.split(b"\r\n")[0].endswith(b"411 Length Required")
        assert b"expected a Content-Length header" in answer and b"empty body" not in answer


def test_reconcile_every_below_a_second_is_refused_naming_the_flag(workspace):
    res = CliRunner(env={"ALSCALE_WEBHOOK_SECRET": SECRET}).invoke(
        main, ["listen", "-w", str(workspace.path), "--url", "http://127.0.0.1:9", "--project", "1", "--reconcile-every", "0.5"])
    assert res.exit_code == 2 and "'--reconcile-every'" in res.output and "reconcile_every" not in res.output, res.output


def test_listen_says_it_listens_only_once_its_start_went_well(workspace):
    """Project 1 at a server that is not there: the start's pull fails, and no 'listening on' comes before the error."""
    res = CliRunner(env={"ALSCALE_WEBHOOK_SECRET": SECRET, "LABEL_STUDIO_API_KEY": "t"}).invoke(
        main, ["listen", "-w", str(workspace.path), "--url", "http://127.0.0.1:9", "--project", "1", "--port", "0"])
    assert res.exit_code != 0 and "listening on" not in res.output, res.output
