"""Outgoing HTTP: a signed, idempotent, retried POST to a real loopback server of our own."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alscale.exceptions import QueueAuthError, QueueError, QueueUnavailableError
from alscale.queues import HttpEndpointConnector, push

SECRET = "s3cret-for-tests-only"


class FlakyReceiver:
    """Answers 503 to the first ``fail_first`` requests, then stores each batch once per Idempotency-Key."""

    def __init__(self, fail_first: int = 0, status: int = 201):
        self.fail_first, self.status = fail_first, status
        self.requests: list[dict] = []
        self.stored: dict[str, dict] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(expected, self.headers.get("X-Alscale-Signature", ""))
                key = self.headers.get("Idempotency-Key")
                receiver.requests.append({"signed": signed, "key": key, "body": body})
                if len(receiver.requests) <= receiver.fail_first:
                    code = 503
                elif not signed:
                    code = 401
                else:
                    receiver.stored.setdefault(key, json.loads(body))
                    code = receiver.status
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/batches"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(**kw):
        made.append(FlakyReceiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_retries_until_accepted_with_same_signature_and_key(receiver_factory, manifest, workspace, monkeypatch):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory(fail_first=3)
    result = push(manifest, {"kind": "http", "url": rx.url, "backoff": 0.01, "data_columns": ["text"]}, workspace=workspace)
    assert len(rx.requests) == 4
    assert all(r["signed"] for r in rx.requests)
    assert {r["key"] for r in rx.requests} == {"run-0001"}
    assert len({r["body"] for r in rx.requests}) == 1  # a retry is the very same batch
    (stored,) = rx.stored.values()
    assert [i["id"] for i in stored["items"]] == manifest.batch.column("id").to_pylist()
    assert stored["items"][0]["data"]["text"].startswith("example text number")
    assert list(result.pushed) == manifest.batch.column("id").to_pylist()
    assert sorted(workspace.pending().column("id").to_pylist()) == sorted(result.pushed)

    # pushing the same batch again: same key, the receiver keeps one copy
    push(manifest, {"kind": "http", "url": rx.url, "backoff": 0.01}, workspace=workspace)
    assert len(rx.stored) == 1 and rx.requests[-1]["key"] == "run-0001"


def test_gives_up_after_retries_and_records_nothing(receiver_factory, manifest, workspace, monkeypatch):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory(fail_first=100)
    with pytest.raises(QueueUnavailableError, match="failed after 3 attempts; last error: HTTP 503"):
        HttpEndpointConnector(rx.url, retries=2, backoff=0.01).push(manifest, workspace=workspace)
    assert len(rx.requests) == 3 and workspace.pending().num_rows == 0


def test_wrong_secret_is_refused_without_retry(receiver_factory, manifest, workspace, monkeypatch):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", "not-the-secret")
    rx = receiver_factory()
    with pytest.raises(QueueAuthError, match="HTTP 401"):
        HttpEndpointConnector(rx.url, backoff=0.01).push(manifest, workspace=workspace)
    assert len(rx.requests) == 1 and not rx.requests[0]["signed"]
    assert workspace.pending().num_rows == 0
    monkeypatch.delenv("ALSCALE_HTTP_SECRET")
    with pytest.raises(QueueAuthError, match="ALSCALE_HTTP_SECRET"):
        HttpEndpointConnector(rx.url).push(manifest)


def test_client_error_fails_at_once_and_pull_is_refused(receiver_factory, manifest, monkeypatch):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory(status=422)
    conn = HttpEndpointConnector(rx.url, backoff=0.01)
    with pytest.raises(QueueError, match="HTTP 422"):
        conn.push(manifest)
    assert len(rx.requests) == 1
    with pytest.raises(QueueError, match="push-only"):
        conn.pull()
