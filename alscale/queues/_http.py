"""HTTP plumbing shared by the connectors: clients, secrets from the environment, retries.

Secrets (API tokens, signing keys) are read from environment variables at the moment a client
is built and kept only in memory; every error message goes through :func:`redact` so a token
never reaches a log line or a traceback.  Network code takes an optional httpx transport
(``transport=httpx.MockTransport(...)`` or a custom one), the seam that keeps it testable.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from alscale.exceptions import ConfigError, QueueAuthError, QueueError, QueueUnavailableError

__all__ = ["NOT_PROCESSED_STATUS", "RETRY_STATUS", "backoff_delays", "check_number", "check_response", "check_url", "display_url", "redact",
           "response_json", "secret_headers", "url_secrets",
           "secret_from_env", "send_with_retries"]

logger = logging.getLogger("alscale.queues")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: Of those, the answers that say the request was not processed (refused, or not passed on by a
#: proxy); after a 500 or 504 the server may have done the work anyway.
NOT_PROCESSED_STATUS = frozenset({429, 502, 503})


def check_url(url: Any, *, what: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; ConfigError naming ``what`` otherwise."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"The {what} must be an http:// or https:// URL with a host. Got {url!r}.")
    return url


def check_number(name: str, value: Any, *, minimum: float = 0.0) -> float:
    """``value`` as a float >= ``minimum``; ConfigError naming the setting otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= minimum:
        raise ConfigError(f"The {name!r} setting must be a number >= {minimum:g}. Got {value!r}.")
    return float(value)


def secret_from_env(var: str, *, what: str) -> str:
    """Read a secret from the environment variable ``var``; a clear error when it is missing."""
    if not var or not isinstance(var, str):
        raise ConfigError(f"Expected the name of an environment variable holding the {what}. Got {var!r}.")
    value = os.environ.get(var, "").strip()
    if not value:
        raise QueueAuthError(f"Expected the {what} in the environment variable {var}. Got it unset or empty.")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        # such a value cannot travel in a header, and the error saying so would quote it
        raise QueueAuthError(f"Expected the {what} in {var} to be one token of printable characters. Got one with spaces or control characters.")
    return value


#: Query parameters whose values are credentials (a webhook URL with ``?token=...``).
_SECRET_PARAMS = ("token", "key", "secret", "password", "passwd", "pass", "sig", "signature", "auth", "code", "apikey", "api_key",
                  "access_token", "client_secret")


def _secret_name(name: str) -> bool:
    """Whether a query parameter or header of this name carries a credential."""
    import urllib.parse

    name = urllib.parse.unquote_plus(name).lower()
    return name in _SECRET_PARAMS or name.endswith(("_token", "_key", "_secret", "-token", "-key", "-secret")) or "auth" in name


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials a URL carries, and the URL itself: its password (``https://user:pw@host``) and
    the values of query parameters named like secrets (``token``, ``key``, ``sig``, ...), for :func:`redact`
    of texts that may quote them (an HTTP library's error)."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    found = [url] + ([parts.password] if parts.password else [])
    found += [value for name, value in urllib.parse.parse_qsl(parts.query) if _secret_name(name)]
    return tuple(found)


def display_url(url: str) -> str:
    """``url`` with its password and secret query values shown as ``***``, whatever their length:
    what messages and the workspace's records hold."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    query = "&".join(f"{piece.partition('=')[0]}=***" if "=" in piece and _secret_name(piece.partition("=")[0]) else piece
                     for piece in parts.query.split("&")) if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, f"{userinfo}{at}{hostport}", parts.path, query, parts.fragment))


def secret_headers(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the headers that carry credentials (``Authorization``, ``X-Api-Key``, ...)."""
    return tuple(value for name, value in headers.items() if _secret_name(name) or name.lower() in ("cookie", "x-api-key"))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text`` by ``***``."""
    text = str(text)
    for s in secrets:
        if s and len(s) >= 4:
            # as written, and as Python escapes it in a repr of str or bytes
            for form in dict.fromkeys((s, repr(s)[1:-1], repr(s.encode("utf-8"))[2:-1])):
                text = text.replace(form, "***")
    return text


def backoff_delays(retries: int, base: float, cap: float = 30.0) -> list[float]:
    """Exponential backoff: ``base * 2**i`` for i in 0..retries-1, capped at ``cap`` seconds."""
    return [min(cap, base * (2**i)) for i in range(max(0, int(retries)))]


def describe_failure(exc: Exception, secrets: Iterable[str] = ()) -> str:
    """One line naming what went wrong with a request, secrets removed."""
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()), secrets)


def send_with_retries(
    send: Callable[[], httpx.Response],
    *,
    what: str,
    retries: int = 4,
    backoff: float = 0.5,
    secrets: Iterable[str] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """Call ``send`` until it answers with a status that is not retryable.

    Connection errors, timeouts and HTTP 429/5xx are retried with exponential backoff; any
    other answer is returned to the caller (which decides what a 4xx means).  Only use this
    for requests that are safe to repeat.

    Raises
    ------
    QueueUnavailableError
        Still failing after ``retries`` retries.
    QueueError
        An answer that cannot be read (a bad Content-Encoding, ...): not retried.
    """
    secrets = tuple(secrets)
    delays = backoff_delays(retries, backoff)
    last = ""
    for attempt in range(len(delays) + 1):
        try:
            response = send()
        except httpx.TransportError as exc:
            last = describe_failure(exc, secrets)
        except httpx.HTTPError as exc:  # an answer that cannot be read (a bad Content-Encoding, ...): no retry
            raise QueueError(f"{what} failed: {describe_failure(exc, secrets)}.") from None
        else:
            if response.status_code not in RETRY_STATUS:
                return response
            last = f"HTTP {response.status_code}"
        if attempt < len(delays):
            logger.warning("%s failed (%s); retry %d/%d in %.1fs", what, last, attempt + 1, len(delays), delays[attempt])
            sleep(delays[attempt])
    raise QueueUnavailableError(f"{what} failed after {len(delays) + 1} attempts; last error: {last}.")


def check_response(response: httpx.Response, *, what: str, secrets: Iterable[str] = ()) -> httpx.Response:
    """Return a 2xx response; raise the matching QueueError for anything else.

    A redirect (3xx) is an error too: the request was not taken where it was sent, and
    following it could replay a POST somewhere else.
    """
    code = response.status_code
    if 200 <= code < 300:
        return response
    if 300 <= code < 400:
        where = response.headers.get("Location") or "no Location"
        raise QueueError(f"{what} was answered with a redirect (HTTP {code} to {redact(where, secrets)}): expected a 2xx answer; give the final URL.")
    body = redact(" ".join(response.text[:4000].split()), secrets)[:300]  # redacted before it is cut
    if code in (401, 403):
        raise QueueAuthError(f"{what} was refused with HTTP {code}: expected valid credentials. Got: {body or 'no detail'}.")
    if code in RETRY_STATUS:
        raise QueueUnavailableError(f"{what} failed with HTTP {code}: {body or 'no detail'}.")
    raise QueueError(f"{what} failed with HTTP {code}: {body or 'no detail'}.")


def response_json(response: httpx.Response, *, what: str, secrets: Iterable[str] = ()) -> Any:
    """The JSON body of ``response``; QueueError when the server answered something else."""
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("Content-Type") or "no content type"
        start = redact(" ".join(response.text[:4000].split()), secrets)[:80]
        raise QueueError(f"{what}: expected a JSON answer. Got {kind} starting {start!r}; is this the right URL?") from None
