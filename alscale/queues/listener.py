"""``alscale listen``: take Label Studio's annotation webhooks into the workspace.

Label Studio neither signs nor retries webhooks, so the receiver

* requires a shared secret in a custom header (``X-Alscale-Secret`` by default), compared in
  constant time with :func:`hmac.compare_digest`; a request without it gets 401;
* handles ``ANNOTATION_CREATED`` and ``ANNOTATION_UPDATED``: each annotation becomes one label
  record written durably into the workspace (atomic, idempotent on the annotation id) before
  the 200 answer, which comes within milliseconds; other actions get 200 and are ignored; a
  body that is not a JSON object with an ``action`` gets 400;
* reconciles by pulling every annotation from the project at start and every
  ``reconcile_every`` seconds, so a webhook missed while the receiver was down costs nothing;
* optionally calls a hook once ``next_round_after`` new labels have arrived (a Python callable,
  or a shell command run in the background with ``ALSCALE_NEW_LABELS`` in its environment).  A
  new label is an id's first "labeled" answer: skips, edits of an answer and a second annotation
  of a task do not count;
* logs one line per webhook at INFO (recorded, ignored and why), or at WARNING (refused and why),
  naming the id where the request names one.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from alscale.checks import check_int
from alscale.exceptions import AlscaleError, ConfigError, QueueError
from alscale.queues.base import open_workspace, sent_here
from alscale.queues.labelstudio import ID_FIELD, WEBHOOK_ACTIONS, LabelStudioConnector, annotation_record, of_pool, task_pool

__all__ = ["DEFAULT_SECRET_ENV", "SECRET_HEADER", "WebhookListener"]

logger = logging.getLogger("alscale.queues")

DEFAULT_SECRET_ENV = "ALSCALE_WEBHOOK_SECRET"
SECRET_HEADER = "X-Alscale-Secret"
MAX_BODY = 16 * 1024 * 1024
WEBHOOK_PATH = "/webhook"  # the one path a webhook is recorded at (what :attr:`WebhookListener.url` names)
REQUEST_TIMEOUT = 30.0  # seconds a request may take to arrive


class WebhookListener:
    """A threaded HTTP server that records Label Studio annotation webhooks.

    Parameters
    ----------
    workspace : str, path or Workspace
    connector : LabelStudioConnector, optional
        Used for the reconcile pull (none: no reconciliation); answers are recorded under its
        name, which carries its server and project.  Without one they are recorded as
        ``label-studio:N``, N the webhook's project, since no server is known: the first
        connector to project N that uses the workspace takes them over
        (:meth:`LabelStudioConnector.adopt_unqualified_name`).
    secret : str
        The shared secret Label Studio sends in ``header``.
    host, port : str, int
        Where to listen (port 0 picks a free one; see :attr:`port`).
    header : str, default "X-Alscale-Secret"
    reconcile_every : float or None, default 300
        Seconds between reconcile pulls after the first (None: only at start).
    next_round_after : int, optional
        Call ``on_next_round`` after this many new labels: ids that get their first "labeled"
        answer (skips, edits and second annotations of a labeled id do not count).
    on_next_round : callable or str, optional
        ``callable(n_new_labels)``, or a shell command.
    """

    def __init__(self, workspace: Any, *, secret: str, connector: LabelStudioConnector | None = None, host: str = "127.0.0.1",
                 port: int = 0, header: str = SECRET_HEADER, reconcile_every: float | None = 300.0,
                 next_round_after: int | None = None, on_next_round: Callable[[int], Any] | str | None = None):
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"Expected a non-empty webhook secret (a str). Got {'an empty one' if secret == '' else type(secret).__name__}.")
        if next_round_after is not None:
            next_round_after = check_int("next_round_after", next_round_after, 1)
        if next_round_after is not None and on_next_round is None:
            raise ConfigError("The 'next_round_after' parameter needs a hook to call (on_next_round). Got none.")
        if reconcile_every is not None and not (isinstance(reconcile_every, (int, float)) and math.isfinite(reconcile_every)
                                                and reconcile_every >= 1):
            raise ConfigError(f"The 'reconcile_every' parameter must be at least 1 second (None or 0: only at start). Got {reconcile_every!r}.")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"The 'port' parameter must be an int from 0 to 65535. Got {port!r}.")
        self.workspace = open_workspace(workspace)
        self.connector = connector
        self.header = header
        self.reconcile_every = reconcile_every
        self.next_round_after = next_round_after
        self.on_next_round = on_next_round
        self._secret = secret.encode("utf-8")
        self._lock = threading.Lock()
        self._new = self._due = 0  # new labels counted toward the next round; a count that reached it, not yet fired
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.source = connector.name if connector is not None else "label-studio"
        try:
            self.server = ThreadingHTTPServer((host, port), self._handler_class())
        except OSError as exc:  # port taken, address not on this machine, host unknown
            raise QueueError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}{WEBHOOK_PATH}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> WebhookListener:
        """Reconcile once, then serve in background threads."""
        self.reconcile()
        serve = threading.Thread(target=self.server.serve_forever, name="alscale-listen", daemon=True)
        serve.start()
        self._threads.append(serve)
        if self.connector is not None and self.reconcile_every:
            loop = threading.Thread(target=self._reconcile_loop, name="alscale-reconcile", daemon=True)
            loop.start()
            self._threads.append(loop)
        logger.info("listening for Label Studio webhooks on %s", self.url)
        return self

    def serve_forever(self, on_start: Callable[[], Any] | None = None) -> None:
        """Start and block until :meth:`stop` (or Ctrl-C); ``on_start`` is called once the start (its reconcile pull) went well."""
        self.start()
        if on_start is not None:
            on_start()
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookListener:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ work
    def reconcile(self) -> int:
        """Pull every annotation and record it; returns the number of new or changed records.

        Only answers on tasks of this workspace's pool, for ids it sent to the project, are
        recorded, as with a webhook: a shared project's other tasks are left out.
        """
        if self.connector is None:
            return 0
        records = self.connector.pull(pool=self.workspace.pool_key)
        self.connector.adopt_unqualified_name(self.workspace)  # before sent_here reads what was sent under this name
        if records:
            records = sent_here(self.workspace, self.connector.name, records)
        changed = self._record(records, skip_invalid=True)
        logger.info("pulled %d answer(s) to this workspace's tasks from %s: %d new or changed", len(records), self.connector.name, changed)
        self._fire_if_due()
        return changed

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.reconcile_every):
            try:
                self.reconcile()
            except AlscaleError as exc:  # the server may be down for a while; try again later
                logger.warning("reconcile pull failed: %s", exc)

    def _record(self, records: list[dict], *, skip_invalid: bool = False) -> int:
        if not records:
            return 0
        with self._lock:
            counting = self.next_round_after is not None
            before = self._labeled_ids() if counting else set()
            changed = self.workspace.record_labels(records, skip_invalid=skip_invalid)
            if counting and changed:
                self._new += len(self._labeled_ids() - before)
            if self.next_round_after is not None and self._new >= self.next_round_after:
                self._due, self._new = self._due + self._new, 0  # fired once the request's own line is logged
        return changed

    def _fire_if_due(self) -> None:
        """Start the next round if the labels recorded so far reached ``next_round_after``."""
        with self._lock:
            count, self._due = self._due, 0
        if count:
            self._fire(count)

    def _labeled_ids(self) -> set:
        """The ids the workspace holds a label for (skipped ones left out)."""
        table = self.workspace.labeled()
        return {i for i, status in zip(table.column("id").to_pylist(), table.column("status").to_pylist()) if status == "labeled"}

    def _fire(self, count: int) -> None:
        hook = self.on_next_round
        logger.info("%d new label(s): starting the next round", count)
        if callable(hook):
            threading.Thread(target=hook, args=(count,), name="alscale-next-round", daemon=True).start()
        else:
            subprocess.Popen(hook, shell=True, env={**os.environ, "ALSCALE_NEW_LABELS": str(count)})  # noqa: S602 - the user's own command

    def authorized(self, headers) -> bool:
        """Whether the request carries the shared secret (checked before its body is read)."""
        given = headers.get(self.header) or ""
        return hmac.compare_digest(given.encode("utf-8"), self._secret)

    def handle(self, headers, body: bytes) -> tuple[int, dict]:
        """Process one webhook request; returns (HTTP status, JSON answer).

        One line is logged per request: at INFO what was recorded or ignored and why, at
        WARNING what was refused and why, naming the alscale id where the payload gives one.
        """
        about: dict = {}
        status, answer = self._handle(headers, body, about)
        self.log_webhook(status, answer, about.get("action"), about.get("id"), about.get("answer"))
        self._fire_if_due()
        return status, answer

    def log_webhook(self, status: int, answer: dict, action: Any = None, alscale_id: Any = None, label: Any = None) -> None:
        """Log one line for a webhook request and the answer it got (``label``: what it carried, e.g. "label 'fox'")."""
        what = "webhook" + (f" {action}" if isinstance(action, str) else "") + (f" for id {alscale_id!r}" if alscale_id is not None else "")
        if "recorded" in answer:
            logger.info("%s: recorded %s" if answer["recorded"] else "%s: already recorded (%s)", what, label)
        elif "ignored" in answer:
            logger.info("%s: ignored (%s)", what, answer["ignored"])
        else:
            logger.warning("%s: refused with HTTP %d (%s)", what, status, answer.get("error"))

    def _handle(self, headers, body: bytes, about: dict) -> tuple[int, dict]:
        if not self.authorized(headers):
            return 401, {"error": f"missing or wrong {self.header} header"}
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return 400, {"error": "expected a JSON body"}
        if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
            got = ("an object without a string 'action'" if isinstance(payload, dict)
                   else "an empty body" if payload is None else f"a JSON {type(payload).__name__}")
            return 400, {"error": f"expected a JSON object with an 'action' (a Label Studio webhook), got {got}"}
        action = about["action"] = payload["action"]
        if action not in WEBHOOK_ACTIONS:
            return 200, {"ignored": action}
        annotation, task = payload.get("annotation"), payload.get("task")
        if isinstance(task, dict):
            data, meta = task.get("data"), task.get("meta")
            found = [h.get(ID_FIELD) for h in (meta, data) if isinstance(h, dict) and h.get(ID_FIELD) is not None]
            about["id"] = found[0] if found else None
        if not isinstance(annotation, dict) or not isinstance(task, dict) or "id" not in annotation:
            return 400, {"error": "expected 'annotation' and 'task' objects in the payload"}
        project = payload.get("project")
        project_id = project.get("id") if isinstance(project, dict) else None
        if project_id is not None and self.connector is not None and project_id != self.connector.project:
            return 200, {"ignored": f"project {project_id!r}; this receiver records project {self.connector.project}"}
        # the connector's name, which carries its server: a bare project id would mix two servers' answers
        source = self.source if self.connector is not None or project_id is None else f"label-studio:{project_id}"
        try:
            rec = annotation_record(annotation, task, source=source, from_name=self.connector.from_name if self.connector else None)
        except QueueError as exc:
            return 400, {"error": str(exc)}
        if rec is None:
            return 200, {"ignored": "not an alscale task"}
        if not of_pool(task, self.workspace.pool_key):
            return 200, {"ignored": f"task of another pool (key {task_pool(task)!r}; this workspace's pool is {self.workspace.pool_key!r})"}
        about["answer"] = f"label {rec['label']!r}" if rec["label"] is not None else f"as {rec['status']}"
        if self.connector is not None and not sent_here(self.workspace, self.connector.name, [rec], warn=False):
            return 200, {"ignored": f"id {rec['id']!r} was not sent to {self.connector.name} by this workspace"}
        try:
            changed = self._record([rec])
        except AlscaleError as exc:
            return 422, {"error": str(exc)}
        return 200, {"recorded": changed}

    def _handler_class(self):
        listener = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "alscale-listen"
            timeout = REQUEST_TIMEOUT  # a client that stops sending does not hold its thread for ever

            def do_POST(self):  # noqa: N802 - http.server's naming
                given = self.headers.get("Content-Length") or "0"
                length = int(given) if given.isdigit() else -1
                path = urlsplit(self.path).path
                chunked = self.headers.get("Content-Length") is None and self.headers.get("Transfer-Encoding") is not None
                if path != WEBHOOK_PATH:  # only the path this receiver gives Label Studio records anything
                    status, answer = 404, {"error": f"no webhook at {path[:80]!r}; expected POSTs to {WEBHOOK_PATH}"}
                    self.close_connection = True  # the body is left unread
                elif not listener.authorized(self.headers):  # before the body: a stranger gets no read of up to MAX_BODY
                    status, answer = 401, {"error": f"missing or wrong {listener.header} header"}
                    self.close_connection = True  # the body is left unread
                elif chunked:  # http.server reads no chunked body: it would be taken for an empty one
                    status, answer = 411, {"error": "expected a Content-Length header; got a body sent with Transfer-Encoding "
                                                    f"{self.headers.get('Transfer-Encoding')[:20]!r}, which is not read"}
                    self.close_connection = True  # the body's end is unknown
                elif length < 0:
                    status, answer = 400, {"error": f"expected a Content-Length of 0 or more bytes, got {given[:20]!r}"}
                    self.close_connection = True  # the body's end is unknown
                elif length > MAX_BODY:
                    status, answer = 413, {"error": "body too large"}
                    self.close_connection = True  # the body is left unread
                else:
                    status, answer = listener.handle(self.headers, self.rfile.read(length))  # logs its own line
                if status in (401, 404, 411, 413) or length < 0:
                    listener.log_webhook(status, answer)  # refused before its body was read
                data = json.dumps(answer).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - a health check
                data = b'{"status": "ok"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):  # route access logs to logging, not stderr
                logger.debug("listen: " + format, *args)

        return Handler
