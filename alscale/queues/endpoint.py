"""Outgoing HTTP: POST a batch as JSON to any endpoint, signed, idempotent, retried.

The request::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <run_id>                     one key per batch: a retry is the same batch
    X-Alscale-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, key = shared secret>

    {"run_id": ..., "created_at": ..., "strategy": ..., "classes": [...],
     "items": [{"id", "rank", "score", "predicted_class", "confidence", "data": {...}}, ...]}

The receiver verifies with ``hmac.compare_digest(expected, header)`` over the raw body.
Connection errors, timeouts, 429, 500, 502, 503 and 504 are retried with exponential backoff
(the same body, the same key, so a receiver that honours ``Idempotency-Key`` stores the batch
once); any other status fails at once.  Credentials in the URL (``user:password@``, a
``?token=``) are shown as ``***`` in messages and in the workspace's records.  Nothing is recorded as pending unless the endpoint answered 2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from alscale.config import check_int
from alscale.exceptions import ConfigError, QueueError
from alscale.queues._http import (
    check_number,
    check_response,
    check_url,
    display_url,
    secret_from_env,
    secret_headers,
    send_with_retries,
    url_secrets,
)
from alscale.queues.base import BatchView, PushResult, load_batch_for, one_push_at_a_time

__all__ = ["DEFAULT_SECRET_ENV", "SIGNATURE_HEADER", "HttpEndpointConnector", "batch_payload", "sign"]

DEFAULT_SECRET_ENV = "ALSCALE_HTTP_SECRET"
SIGNATURE_HEADER = "X-Alscale-Signature"


def sign(body: bytes, secret: str) -> str:
    """The ``X-Alscale-Signature`` value of a request body.

    Parameters
    ----------
    body : bytes
        The exact bytes POSTed.
    secret : str
        The shared signing secret (``$ALSCALE_HTTP_SECRET`` by default).

    Returns
    -------
    str
        ``sha256=<hex>``: the HMAC-SHA256 of ``body`` under ``secret``; a receiver recomputes
        it and compares in constant time (:func:`hmac.compare_digest`).
    """
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def batch_payload(batch: BatchView) -> dict:
    """The JSON document POSTed for a batch."""
    return {
        "run_id": batch.run_id,
        "created_at": batch.manifest.get("created_at"),
        "strategy": (batch.manifest.get("strategy") or {}).get("name"),
        "classes": batch.classes,
        "items": [{k: r[k] for k in ("id", "rank", "score", "predicted_class", "confidence", "data")} for r in batch.rows],
    }


class HttpEndpointConnector:
    """A push-only queue: any HTTP endpoint that accepts a signed JSON batch.

    Parameters
    ----------
    url : str
    secret_env : str, default "ALSCALE_HTTP_SECRET"
        Environment variable holding the signing secret.
    data_columns : list of str or dict, optional
        Pool columns sent with each item.
    retries : int, default 5
    backoff : float, default 0.5
        First retry delay in seconds; doubles each retry (capped at 30 s).
    timeout : float, default 60
    headers : dict, optional
        Extra headers (e.g. an Authorization the endpoint wants).
    transport : httpx.BaseTransport, optional
    """

    def __init__(self, url: str, *, secret_env: str = DEFAULT_SECRET_ENV, data_columns: Sequence[str] | Mapping[str, str] | None = None,
                 retries: int = 5, backoff: float = 0.5, timeout: float = 60.0, headers: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None):
        check_url(url, what="endpoint 'url'")
        retries = check_int("retries", retries, 0)
        self.url, self.secret_env, self.data_columns = url, secret_env, data_columns
        if headers is not None and (not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values())):
            kinds = {name: type(v).__name__ for name, v in headers.items()} if isinstance(headers, Mapping) else type(headers).__name__
            raise ConfigError(f"The 'headers' setting must be a table of header names to strings. Got {kinds}.")  # values may be secrets
        self.retries = retries
        self.backoff, self.timeout = check_number("backoff", backoff), check_number("timeout", timeout, minimum=0.001)
        self.headers = dict(headers or {})
        self.shown_url = display_url(url)  # the URL without its credentials: for messages and the pending table
        self.name = f"http:{self.shown_url}"
        self._transport = transport

    def __repr__(self) -> str:
        return f"HttpEndpointConnector(url={self.shown_url!r}, secret_env={self.secret_env!r})"

    @one_push_at_a_time
    def push(self, manifest: Any, ws: Any) -> PushResult:
        """POST the batch; on a 2xx answer record its ids as pending in ``workspace``.

        Raises
        ------
        QueueAuthError
            The secret is missing, or the endpoint answered 401/403.
        QueueUnavailableError
            Still failing after the retries.
        QueueError
            Any other 4xx.
        """
        start = time.perf_counter()
        secret = secret_from_env(self.secret_env, what="HTTP signing secret")
        batch = load_batch_for(ws, manifest, self.data_columns)
        body = json.dumps(batch_payload(batch), separators=(",", ":"), default=str, allow_nan=False).encode("utf-8")
        headers = httpx.Headers(self.headers)  # names are case-insensitive: alscale's own replace a user's of any case
        headers.update({"Content-Type": "application/json", "Idempotency-Key": batch.run_id, SIGNATURE_HEADER: sign(body, secret)})
        what = f"POSTing batch {batch.run_id} to {self.shown_url}"
        secrets = (secret, *url_secrets(self.url), *secret_headers(self.headers))
        with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
            response = send_with_retries(lambda: client.post(self.url, content=body, headers=headers), what=what,
                                         retries=self.retries, backoff=self.backoff, secrets=secrets)
            check_response(response, what=what, secrets=secrets)
        if ws is not None:
            ws.add_pending(batch.ids, batch_run_id=batch.run_id, queue=self.name)
        return PushResult(queue=self.name, run_id=batch.run_id, pushed=tuple(batch.ids), seconds=time.perf_counter() - start,
                          details={"status": response.status_code})

    def pull(self, *, workspace: Any = None) -> list[dict]:
        raise QueueError(f"The HTTP endpoint {self.shown_url} is push-only: expected its labels back as a labels file "
                         "(alscale label WS FILE, or alscale pull --to file --labels FILE). Got a pull request.")

    def pending(self) -> list:
        raise QueueError(f"The HTTP endpoint {self.shown_url} cannot list pending ids: expected them from the workspace (Workspace.pending()).")
