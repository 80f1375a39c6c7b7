"""Label Studio queue names carry the server as well as the project (no Label Studio needed)."""

from __future__ import annotations

import json

import pytest

from alscale.queues import LabelStudioConnector, WebhookListener
from alscale.queues.labelstudio import queue_name, server_of

SECRET = "webhook-secret-for-tests"


@pytest.mark.parametrize("url,server", [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ("HTTP://LS.Example.org:80/", "http://ls.example.org"),
    ("https://ls.example.org:443/label-studio//", "https://ls.example.org/label-studio"),
    ("https://ls.example.org:8443/ls?x=1#top", "https://ls.example.org:8443/ls"),
    ("http://user:password@ls.example.org/", "http://ls.example.org"),  # written into workspaces: never a credential
    ("http://[::1]:8080", "http://[::1]:8080"),
])
def test_the_server_is_the_normalised_base_url(url, server):
    assert server_of(url) == server
    assert queue_name(3, url) == f"label-studio:3@{server}"


def test_a_connectors_name_is_its_project_at_its_server():
    assert LabelStudioConnector("http://LocalHost:8080/", 3).name == "label-studio:3@http://localhost:8080"
    assert LabelStudioConnector("http://localhost:8080", 3).name != LabelStudioConnector("http://localhost:8081", 3).name


def _webhook(project=6):
    return json.dumps({"action": "ANNOTATION_CREATED", "project": {"id": project}, "task": {"id": 1, "data": {"alscale_id": 1003}},
                       "annotation": {"id": 77, "result": [{"type": "choices", "from_name": "label", "to_name": "text",
                                                            "value": {"choices": ["fox"]}}]}}).encode()


def test_a_webhook_is_recorded_under_its_connectors_name(workspace):
    connector = LabelStudioConnector("http://127.0.0.1:9/", 6)
    workspace.add_pending([1003], batch_run_id="run-0001", queue=connector.name)
    lst = WebhookListener(workspace, secret=SECRET, connector=connector, port=0)
    try:
        assert lst.handle({"X-Alscale-Secret": SECRET}, _webhook()) == (200, {"recorded": 1})
    finally:
        lst.server.server_close()
    assert workspace.label_log().column("source").to_pylist() == ["label-studio:6@http://127.0.0.1:9"]


def test_a_webhook_without_a_connector_is_recorded_under_the_bare_project_name(workspace):
    """No server is known: the first connector to the project that uses the workspace takes the record over."""
    lst = WebhookListener(workspace, secret=SECRET, port=0)
    try:
        assert lst.handle({"X-Alscale-Secret": SECRET}, _webhook()) == (200, {"recorded": 1})
    finally:
        lst.server.server_close()
    assert workspace.label_log().column("source").to_pylist() == ["label-studio:6"]
    connector = LabelStudioConnector("http://127.0.0.1:9", 6)
    assert connector.adopt_unqualified_name(workspace) == {"labels": 1, "pending": 0, "sent": 0}
    assert workspace.label_log().column("source").to_pylist() == [connector.name]
