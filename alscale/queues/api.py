"""The Python API of the queues: build a connector from settings, push a batch, pull labels.

Settings (a dict, or the ``[queue]`` table of a TOML/YAML file) pick the connector by ``kind``::

    [queue]
    kind = "label-studio"            # label-studio | http | file
    url = "http://127.0.0.1:8080"
    project = 3
    token_env = "LABEL_STUDIO_API_KEY"
    data_columns = ["text"]

    # kind = "http":  url, secret_env (ALSCALE_HTTP_SECRET), data_columns, retries, backoff
    # kind = "file":  path, format, data_columns, source_column, labels, overwrite

Secrets are never settings: only the *names* of the environment variables that hold them.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alscale.exceptions import ConfigError
from alscale.queues.base import Connector, PushResult, open_workspace
from alscale.queues.endpoint import HttpEndpointConnector
from alscale.queues.files import FileConnector
from alscale.config import check_path, read_settings_file
from alscale.queues.labelstudio import LabelStudioConnector
from alscale.pool.identity import pool_key

__all__ = ["KINDS", "load_queue_settings", "make_connector", "pull", "push"]

KINDS = {
    "label-studio": (LabelStudioConnector, {"url", "project", "token_env", "data_columns", "from_name", "chunk_size",
                                            "lookup_chunk", "page_size", "timeout", "retries", "backoff"}),
    "http": (HttpEndpointConnector, {"url", "secret_env", "data_columns", "retries", "backoff", "timeout", "headers"}),
    "file": (FileConnector, {"path", "format", "data_columns", "source_column", "labels", "overwrite"}),
}
_POSITIONAL = {"label-studio": ("url", "project"), "http": ("url",), "file": ()}  # a file queue: path to push, labels to pull


def load_queue_settings(path: str | os.PathLike) -> dict[str, Any]:
    """Read the ``[queue]`` table (or the whole document if it has none) of a TOML/YAML file.

    Parameters
    ----------
    path : str or path
        The file (``--config`` of ``alscale push`` and ``pull``).

    Returns
    -------
    dict
        The queue settings, keys with dashes turned into underscores; pass it to :func:`push`,
        :func:`pull` or :func:`make_connector`.

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, or its ``[queue]`` is not a table.
    """
    path = Path(check_path("config", path))
    data = read_settings_file(path, what="queue config")
    table = data.get("queue", data)
    if not isinstance(table, dict):
        raise ConfigError(f"The [queue] section of {str(path)!r} must be a table. Got {type(table).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in table.items()}


def make_connector(settings: Mapping[str, Any] | Connector, **overrides: Any) -> Connector:
    """A connector from settings (``kind`` + that kind's keys); a connector is returned as is.

    Parameters
    ----------
    settings : dict or Connector
        ``kind`` (``"label-studio"``, ``"http"`` or ``"file"``; ``"label-studio"`` when left
        out and ``project`` is given, as with ``alscale push --project``) and that kind's
        settings (see the module docstring).
    **overrides
        Settings over ``settings``; those whose value is None leave the settings' value in
        place.

    Returns
    -------
    Connector

    Raises
    ------
    ConfigError
        No kind, an unknown kind or key (the message suggests the closest known key), a
        missing ``url``/``project``/``path``, or a value of the wrong type.
    """
    if not isinstance(settings, Mapping) and isinstance(settings, Connector):
        given = sorted(k for k, v in overrides.items() if v is not None and v != ())
        if given:  # a built connector keeps its own settings: silently dropping these would mislead
            raise ConfigError(f"Expected settings (a dict) to apply {given} to. Got a connector, {settings!r}, whose settings are fixed.")
        return settings
    if settings is not None and not isinstance(settings, Mapping):
        raise ConfigError(f"Expected queue settings as a dict (or a connector; a file: load_queue_settings). Got {settings!r}.")
    data = {str(k).replace("-", "_"): v for k, v in dict(settings or {}).items()}
    data.update({k.replace("-", "_"): v for k, v in overrides.items() if v is not None and v != ()})
    kind = data.pop("kind", None)
    if kind is None and "project" in data:  # as `alscale push --project` takes it
        kind = "label-studio"
    if kind is None:
        raise ConfigError(f"Expected a queue kind among {sorted(KINDS)} (--to, or 'kind' in the queue config). Got none.")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"The queue 'kind' must be one of {sorted(KINDS)}. Got {kind!r}.")
    cls, known = KINDS[kind]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown {kind} queue setting {key!r}.{hint}")
    args = []
    for key in _POSITIONAL[kind]:
        if key not in data:
            raise ConfigError(f"The {kind} queue needs the {key!r} setting. Got none.")
        args.append(data.pop(key))
    if kind == "label-studio" and isinstance(args[1], str) and args[1].strip().isdigit():  # "3" from a YAML file or env
        args[1] = int(args[1])
    return cls(*args, **data)  # the connector checks its values (a project of 3.7 is refused, not cut to 3)


def push(manifest: Any, queue: Mapping[str, Any] | Connector, *, workspace: Any = None) -> PushResult:
    """Send a batch manifest to a labeling queue and record what was sent as pending.

    Parameters
    ----------
    manifest : str, path or Manifest
        The batch (a directory written by ``alscale select``, or a loaded Manifest).
    queue : dict or Connector
        Queue settings (see the module docstring) or a connector.
    workspace : str, path or Workspace, optional
        Where pending ids are recorded, so the next selection excludes them.  Only ids that
        actually reached the queue are recorded, also when the push fails half-way.  Without
        one nothing is recorded: for a queue fed outside an active-learning loop.

    Returns
    -------
    PushResult

    Raises
    ------
    ConfigError
        Bad queue settings (see :func:`make_connector`) or not a manifest.
    OutputError, PoolSchemaError, WorkspaceError
        The manifest cannot be read, or its ids are not the workspace's pool's: nothing is sent.
    QueueAuthError, QueueUnavailableError, QueueError
        The queue refused the credentials, could not be reached, or refused the batch.
    """
    connector = make_connector(queue)
    return connector.push(manifest, workspace=open_workspace(workspace))


def pull(queue: Mapping[str, Any] | Connector, *, workspace: Any = None, pool: Any = None) -> list[dict]:
    """Take finished annotations back from a labeling queue (recorded in ``workspace`` when given).

    Parameters
    ----------
    queue : dict or Connector
        Queue settings (see the module docstring) or a connector.
    workspace : str, path or Workspace, optional
        Where the labels are recorded (idempotent: pulling twice records nothing new).
    pool : str, path or list of them, optional
        Only the answers on tasks of this pool (where it lives, as ``select`` was given it: a
        file, folder, glob or URI), for a Label Studio project that holds tasks of several
        pools; tasks pushed before tasks carried their pool match any.  By default the
        workspace's pool, or every pool without a workspace.  Only Label Studio tasks carry
        their pool.

    Returns
    -------
    list of dict
        Label records ``{"id", "label", "status", "source", "annotation_id", "annotator",
        "answered_at"}`` (the last where the queue gives a time); a Label Studio record also
        has ``"pool"``, the key of its task's pool (None for a task pushed without one).

    Raises
    ------
    ConfigError
        Bad queue settings (see :func:`make_connector`), or ``pool`` for a queue that is not
        Label Studio, or another pool than the workspace's.
    WorkspaceError, LabelError
        No workspace at the path, or labels it refuses (a file's labels are refused whole).
    QueueAuthError, QueueUnavailableError, QueueError
        The queue refused the credentials, could not be reached, or answered unexpectedly.
    """
    connector = make_connector(queue)
    if pool is None:
        return connector.pull(workspace=open_workspace(workspace))
    if not isinstance(connector, LabelStudioConnector):
        raise ConfigError(f"Expected no pool for a {connector.name.split(':')[0]} queue: only Label Studio tasks carry their pool. Got pool={pool!r}.")
    if not isinstance(pool, (str, os.PathLike, list, tuple)) or not pool:
        raise ConfigError(f"Expected the pool as a path, glob or URI (or a list of them). Got {pool!r}.")
    ws, key = open_workspace(workspace), pool_key(pool)
    if ws is not None and not ws.owns_pool_key(key):
        # another pool's answers on ids this workspace also sent would be taken for its own
        raise ConfigError(f"Expected pool= to be the pool of workspace {str(ws.path)!r} ({ws.config['pool']!r}), or no pool. "
                          f"Got {pool!r}, another pool.")
    return connector.pull(workspace=ws, pool=key)
