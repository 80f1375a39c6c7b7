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
from alscale.config import read_settings_file
from alscale.queues.labelstudio import LabelStudioConnector

__all__ = ["KINDS", "load_queue_settings", "make_connector", "pull", "push"]

KINDS = {
    "label-studio": (LabelStudioConnector, {"url", "project", "token_env", "data_columns", "from_name", "chunk_size",
                                            "lookup_chunk", "page_size", "timeout", "retries", "backoff"}),
    "http": (HttpEndpointConnector, {"url", "secret_env", "data_columns", "retries", "backoff", "timeout", "headers"}),
    "file": (FileConnector, {"path", "format", "data_columns", "source_column", "labels", "overwrite"}),
}
_POSITIONAL = {"label-studio": ("url", "project"), "http": ("url",), "file": ("path",)}


def load_queue_settings(path: str | os.PathLike) -> dict[str, Any]:
    """Read the ``[queue]`` table (or the whole document if it has none) of a TOML/YAML file."""
    path = Path(path)
    data = read_settings_file(path, what="queue config")
    table = data.get("queue", data)
    if not isinstance(table, dict):
        raise ConfigError(f"The [queue] section of {str(path)!r} must be a table. Got {type(table).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in table.items()}


def make_connector(settings: Mapping[str, Any] | Connector, **overrides: Any) -> Connector:
    """A connector from settings (``kind`` + that kind's keys); a connector is returned as is.

    Overrides whose value is None leave the settings' value in place.  Unknown keys are an
    error that suggests the closest known key.
    """
    if not isinstance(settings, Mapping) and isinstance(settings, Connector):
        return settings
    data = {str(k).replace("-", "_"): v for k, v in dict(settings or {}).items()}
    data.update({k.replace("-", "_"): v for k, v in overrides.items() if v is not None and v != ()})
    kind = data.pop("kind", None)
    if kind is None:
        raise ConfigError(f"Expected a queue kind among {sorted(KINDS)} (--to, or 'kind' in the queue config). Got none.")
    if kind not in KINDS:
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
    if kind == "label-studio":
        try:
            args[1] = int(args[1])
        except (TypeError, ValueError):
            raise ConfigError(f"The Label Studio 'project' must be an int >= 1. Got {args[1]!r}.") from None
    return cls(*args, **data)


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
    """
    connector = make_connector(queue)
    return connector.push(manifest, workspace=open_workspace(workspace))


def pull(queue: Mapping[str, Any] | Connector, *, workspace: Any = None) -> list[dict]:
    """Take finished annotations back from a labeling queue (recorded in ``workspace`` when given).

    Parameters
    ----------
    queue : dict or Connector
        Queue settings (see the module docstring) or a connector.
    workspace : str, path or Workspace, optional
        Where the labels are recorded (idempotent: pulling twice records nothing new).

    Returns
    -------
    list of dict
        Label records ``{"id", "label", "status", "source", "annotation_id", "annotator",
        "answered_at"}`` (the last where the queue gives a time).
    """
    connector = make_connector(queue)
    return connector.pull(workspace=open_workspace(workspace))
