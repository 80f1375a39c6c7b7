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


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(handler: type[BaseHTTPRequestHandler], path: str = "") -> tuple[ThreadingHTTPServer, str]:
    """A loopback server of ``handler`` in a background thread, and its URL (plus ``path``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}{path}"


class FlakyReceiver:
    """Answers 503 to the first ``fail_first`` requests, then stores each batch once per Idempotency-Key."""

    def __init__(self, fail_first: int = 0, status: int = 201):
        self.fail_first, self.status = fail_first, status
        self.requests: list[dict] = []
        self.stored: dict[str, dict] = {}
        receiver = self

        class Handler(_QuietHandler):
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

        self.server, self.url = _serve(Handler, "/batches")

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


def test_the_cli_says_a_batch_was_sent_not_that_it_was_new(receiver_factory, manifest, workspace, monkeypatch):
    """An endpoint cannot be asked what it holds: a second push is sent again, deduplicated on the Idempotency-Key."""
    from click.testing import CliRunner

    from alscale.cli import main

    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory()
    args = ["push", str(manifest.path), "-w", str(workspace.path), "--to", "http", "--url", rx.url, "--data-column", "text"]
    for _ in range(2):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert f"http:{rx.url}: sent {manifest.batch.num_rows} (batch run-0001 as Idempotency-Key, HTTP 201" in res.output
        assert "new" not in res.output
    assert len(rx.requests) == 2 and len(rx.stored) == 1


def test_gives_up_after_retries_and_records_nothing(receiver_factory, manifest, workspace, monkeypatch):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory(fail_first=100)
    with pytest.raises(QueueUnavailableError, match="failed after 3 attempts; last error: HTTP 503"):
        HttpEndpointConnector(rx.url, retries=2, backoff=0.01).push(manifest, workspace=workspace)
    assert len(rx.requests) == 3 and workspace.pending().num_rows == 0


def test_a_receiver_that_keeps_failing_exits_1_in_one_line_not_the_bad_input_2(receiver_factory, manifest, workspace, monkeypatch):
    """5xx after every retry is no fault of the input: the same push may succeed later (exit 1, as for a lost cluster)."""
    from click.testing import CliRunner

    from alscale.cli import main

    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory(fail_first=100)
    config = workspace.path.parent / "queue.toml"
    config.write_text(f'[queue]\nkind = "http"\nurl = "{rx.url}"\nretries = 1\nbackoff = 0.01\ndata_columns = ["text"]\n')
    args = ["push", str(manifest.path), "-w", str(workspace.path), "--config", str(config)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith("alscale: error: ") and "failed after 2 attempts; last error: HTTP 503" in line
    assert workspace.pending().num_rows == 0
    rx.fail_first = 0  # the receiver is back: the same command succeeds
    assert CliRunner().invoke(main, args).exit_code == 0 and workspace.pending().num_rows == manifest.batch.num_rows


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


def test_redirect_is_not_acceptance(receiver_factory, manifest, workspace, monkeypatch):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory(status=302)
    with pytest.raises(QueueError, match="redirect \\(HTTP 302"):
        HttpEndpointConnector(rx.url, backoff=0.01).push(manifest, workspace=workspace)
    assert len(rx.requests) == 1 and workspace.pending().num_rows == 0


def test_batch_that_does_not_fit_the_workspace_is_never_sent(receiver_factory, tmp_path, workspace, monkeypatch):
    from alscale.exceptions import WorkspaceError

    from .queue_support import make_manifest, write_pool

    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory()
    strings = write_pool(tmp_path / "strings.parquet", 20, string_ids=True)
    other = write_pool(tmp_path / "other.parquet", 400)  # ids 1000..1399; the workspace's pool holds 1000..1199
    for m, match in ((make_manifest(tmp_path / "s", strings, ["doc-00001", "doc-00002"], run_id="run-s"), "integer ids"),
                     (make_manifest(tmp_path / "o", other, [1100, 1300, 1301], run_id="run-o"), "2 ids not in it, e.g. \\[1300, 1301\\]")):
        with pytest.raises(WorkspaceError, match=match):
            HttpEndpointConnector(rx.url, backoff=0.01).push(m, workspace=workspace)
    assert rx.requests == [] and workspace.pending().num_rows == 0


@pytest.mark.parametrize("settings, match", [
    ({"url": "http://[::1"}, "'url' must be an http:// or https:// URL with a host"),
    ({"url": "http://"}, "URL with a host"),
    ({"url": "ftp://example.org/x"}, "URL with a host"),
    ({"url": "http://127.0.0.1:9/x", "timeout": "fast"}, "'timeout' setting must be a number"),
    ({"url": "http://127.0.0.1:9/x", "backoff": -1}, "'backoff' setting must be a number >= 0"),
    ({"url": "http://127.0.0.1:9/x", "headers": "x"}, "'headers' setting must be a table"),
    ({"url": "http://127.0.0.1:9/x", "headers": {"X-A": 1}}, "'headers' setting must be a table"),
])
def test_endpoint_settings_are_checked_before_any_request(settings, match):
    from alscale.exceptions import ConfigError
    from alscale.queues import make_connector

    with pytest.raises(ConfigError, match=match):
        make_connector({"kind": "http", **settings})


@pytest.mark.parametrize("settings, match", [
    ({"url": "http://[::1"}, "Label Studio 'url' must be an http:// or https:// URL with a host"),
    ({"url": "http://127.0.0.1:9", "timeout": "fast"}, "'timeout' setting must be a number"),
    ({"url": "http://127.0.0.1:9", "retries": -2}, "'retries' parameter must be an int >= 0"),
])
def test_label_studio_settings_are_checked_before_any_request(settings, match):
    from alscale.exceptions import ConfigError
    from alscale.queues import make_connector

    with pytest.raises(ConfigError, match=match):
        make_connector({"kind": "label-studio", "project": 1, **settings})


class _HtmlServer:
    """Any web server that is not Label Studio: 200 and an HTML page for every request."""

    def __init__(self):
        class Handler(_QuietHandler):
            def do_GET(self):  # noqa: N802
                body = b"<html><body>Welcome</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

        self.server, self.url = _serve(Handler)


def test_a_server_that_is_not_label_studio_gets_a_one_line_error(manifest, workspace, monkeypatch):
    from click.testing import CliRunner

    from alscale.cli import main

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "some-token")
    html = _HtmlServer()
    try:
        for args in (["push", str(manifest.path)], ["pull"]):
            res = CliRunner().invoke(main, [*args, "-w", str(workspace.path), "--url", html.url, "--project", "3"])
            assert res.exit_code == 2, res.output
            (line,) = res.output.strip().splitlines()
            assert "expected a JSON answer. Got text/html starting '<html><body>Welcome</body></html>'" in line
    finally:
        html.server.shutdown()
        html.server.server_close()
    assert workspace.pending().num_rows == 0


class _GarbledReceiver:
    """Answers 200 with 'Content-Encoding: gzip' on a body that is not gzip."""

    def __init__(self):
        class Handler(_QuietHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"not gzip!")

        self.server, self.url = _serve(Handler, "/batches")


def test_an_answer_that_cannot_be_decoded_is_one_error_and_records_nothing(manifest, workspace, monkeypatch):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = _GarbledReceiver()
    try:
        with pytest.raises(QueueError, match="failed: DecodingError"):
            HttpEndpointConnector(rx.url, backoff=0.01).push(manifest, workspace=workspace)
    finally:
        rx.server.shutdown()
        rx.server.server_close()
    assert workspace.pending().num_rows == 0


def test_a_decimal_pool_column_travels_as_its_exact_text(receiver_factory, tmp_path, monkeypatch):
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from .queue_support import make_manifest

    pool = tmp_path / "dec.parquet"
    prices = [decimal.Decimal("19.99"), decimal.Decimal("0.10")]
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64()), "price": pa.array(prices, pa.decimal128(10, 2))}), pool)
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory()
    push(make_manifest(tmp_path / "b", pool, [2, 1], run_id="run-dec"), {"kind": "http", "url": rx.url, "data_columns": ["price"]})
    (stored,) = rx.stored.values()
    assert [(i["id"], i["data"]["price"]) for i in stored["items"]] == [(2, "0.10"), (1, "19.99")]


def test_digit_string_ids_are_not_taken_for_an_integer_pools_ids(receiver_factory, tmp_path, workspace, monkeypatch):
    """A batch of "1000", "1001" (a string-id pool's) used to be POSTed for a pool of ints; with a data column, a traceback."""
    from alscale.exceptions import PoolSchemaError, WorkspaceError
    from alscale.loop.idbatch import write_id_batch

    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory()
    pool = workspace.config["pool"]
    write_id_batch(tmp_path / "b", ["1000", "1001"], id_type="string", strategy="x", run_id="str-1", seed=0, pool=pool, id_column="id")
    for data in ([], ["text"]):
        with pytest.raises(WorkspaceError, match=r"Expected a batch of integer ids, as the pool of workspace .* has. Got '1000'"):
            push(tmp_path / "b", {"kind": "http", "url": rx.url, "data_columns": data}, workspace=workspace)
    with pytest.raises(PoolSchemaError, match=r"Expected a batch of integer ids, as the pool's id column 'id' \(int64\)"):
        push(tmp_path / "b", {"kind": "http", "url": rx.url, "data_columns": ["text"]})  # no workspace: found reading the pool
    assert rx.requests == [] and workspace.pending().num_rows == 0


def test_nan_and_infinity_in_a_data_column_travel_as_null(receiver_factory, tmp_path, monkeypatch):
    """JSON has no NaN: a receiver's parser (JSON.parse) refused the body, and the JSON lines export too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .queue_support import make_manifest

    pool = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "x": [float("nan"), 0.5, float("-inf")],
                             "v": [[1.0, float("nan")], [2.0, 3.0], [float("inf"), 0.0]]}), pool)
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory()
    m = make_manifest(tmp_path / "b", pool, [3, 1, 2], run_id="run-nan")
    push(m, {"kind": "http", "url": rx.url, "data_columns": ["x", "v"]})
    body = rx.requests[-1]["body"].decode()
    assert "NaN" not in body and "Infinity" not in body
    items = json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} in the body"))["items"]
    assert [(i["id"], i["data"]["x"], i["data"]["v"]) for i in items] == [(3, None, [None, 0.0]), (1, None, [1.0, None]), (2, 0.5, [2.0, 3.0])]
    push(m, {"kind": "file", "path": str(tmp_path / "out.jsonl"), "data_columns": ["x"]})
    lines = [json.loads(line, parse_constant=lambda name: pytest.fail(name)) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["alscale_id"], r["x"]) for r in lines] == [(3, None), (1, None), (2, 0.5)]


def test_credentials_in_the_url_are_neither_printed_nor_recorded(receiver_factory, manifest, workspace, monkeypatch, caplog):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    rx = receiver_factory(fail_first=1)  # one retry: its warning names the URL
    url = rx.url.replace("http://", "http://bob:hunter2pw@") + "?team=ml&token=tok-9f8e7d"
    result = HttpEndpointConnector(url, backoff=0.01).push(manifest, workspace=workspace)
    assert len(rx.stored) == 1  # the request itself went out with them
    shown = rx.url.replace("http://", "http://bob:***@") + "?team=ml&token=***"
    assert result.queue == f"http:{shown}" and set(workspace.pending().column("queue").to_pylist()) == {f"http:{shown}"}
    assert "retry 1/" in caplog.text and shown in caplog.text
    state = b"".join(f.read_bytes() for f in (workspace.path / "state").iterdir())
    assert all(secret not in caplog.text and secret.encode() not in state for secret in ("hunter2pw", "tok-9f8e7d"))
    assert "hunter2pw" not in repr(HttpEndpointConnector(url))


def test_a_shown_url_hides_short_credentials_and_keeps_a_host_that_repeats_one():
    from alscale.queues._http import display_url, secret_headers

    assert display_url("https://bob:pw1@h/in?token=abc&team=ml") == "https://bob:***@h/in?token=***&team=ml"
    assert display_url("https://bob:hooks@hooks.example.com/hooks") == "https://bob:***@hooks.example.com/hooks"
    assert display_url("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
    assert secret_headers({"Authorization": "Bearer xyz", "X-Team": "ml", "Content-Type": "application/json"}) == ("Bearer xyz",)


def test_alscales_own_headers_replace_a_users_of_any_case(manifest, monkeypatch):
    seen = []

    class Handler(_QuietHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(list(self.headers.items()))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server, url = _serve(Handler, "/hook")
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", SECRET)
    try:
        headers = {"content-type": "text/plain", "idempotency-key": "mine", "X-Team": "ml"}
        HttpEndpointConnector(url, headers=headers).push(manifest)
    finally:
        server.shutdown()
        server.server_close()
    (got,) = seen
    named = {}
    for name, value in got:
        named.setdefault(name.lower(), []).append(value)
    assert named["content-type"] == ["application/json"] and named["idempotency-key"] == ["run-0001"] and named["x-team"] == ["ml"]


def test_a_secret_with_control_characters_is_refused_without_quoting_it(manifest, monkeypatch):
    monkeypatch.setenv("ALSCALE_HTTP_SECRET", "TOPSECRET123\nsecond")
    with pytest.raises(QueueAuthError, match="one token of printable characters") as err:
        HttpEndpointConnector("http://127.0.0.1:9/x").push(manifest)
    assert "TOPSECRET" not in str(err.value)


def test_redaction_covers_escaped_forms_and_the_cut():
    import httpx

    from alscale.queues._http import check_response, redact

    token = 'tok"en\\1234'
    assert "tok" not in redact(f"{token} {token!r} {token.encode()!r}", [token])
    body = "x" * 290 + "SECRETTOKEN42" + "y" * 100  # the secret straddles the 300-character cut
    with pytest.raises(QueueError) as err:
        check_response(httpx.Response(500, text=body), what="Sending", secrets=["SECRETTOKEN42"])
    assert "SECRET" not in str(err.value) and "***" in str(err.value)
