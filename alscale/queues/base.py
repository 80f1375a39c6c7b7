"""The connector protocol every labeling queue follows, and the batch view they all push.

A connector does three things::

    push(manifest, *, workspace=None) -> PushResult   send a batch, record what was sent as pending
    pull(*, workspace=None) -> list[dict]             take finished annotations back
    pending() -> list                                 ids the queue holds that nobody answered

Label records are plain dicts, the shape :meth:`alscale.loop.workspace.Workspace.record_labels`
takes: ``{"id", "label", "status", "source", "annotation_id", "annotator"}`` where ``status`` is
``"labeled"``, ``"skipped"`` or ``"cancelled"`` and ``label`` is None unless labeled.

:class:`BatchView` is what a connector pushes: the manifest's rows in rank order, joined with
the data columns the user names from the pool.  Only the selected ids are read from the pool's
Parquet files (a pyarrow dataset filter), so a push costs O(k) rows of I/O, not O(pool).
"""

from __future__ import annotations

import base64
import contextlib
import decimal
import functools
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from alscale.exceptions import ConfigError, OutputError, PoolSchemaError, WorkspaceError, first_line
from alscale.manifest import Manifest
from alscale.pool.files import folder_files, glob_files
from alscale.pool.identity import pool_key
from alscale.records import STATUSES

__all__ = ["PUSH_LOCK", "BatchView", "Connector", "PushResult", "STATUSES", "load_batch", "load_batch_for",
           "normalize_data_columns", "one_push_at_a_time", "open_workspace", "sent_here"]

logger = logging.getLogger("alscale.queues")

PUSH_LOCK = ".push.lock"


def one_push_at_a_time(push: Callable[[Any, Any, Any], PushResult]) -> Callable[..., PushResult]:
    """Make a connector's ``push(self, manifest, ws)`` its public ``push(manifest, *, workspace=None)``,
    holding the workspace's push lock (``.push.lock``) throughout: one push from a workspace at a time.

    A push looks up which ids the queue holds, sends the others and records them as pending;
    two pushes of one batch running at once would both find nothing and both send everything.
    A second push waits (with a warning that says so) for the first to finish, then finds its
    tasks there and sends nothing twice: a cron retry that overlaps a slow push ends as a
    success, not as a failure to be retried again.  No workspace: no lock.
    """

    @functools.wraps(push)
    def locked(self, manifest: Any, *, workspace: Any = None) -> PushResult:
        ws = open_workspace(workspace)
        if ws is None:
            return push(self, manifest, None)
        from alscale._atomic import file_lock

        path = ws.path / PUSH_LOCK
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(path, wait=False))
            except BlockingIOError:
                logger.warning("another push from workspace %r is running (it holds %s): waiting for it to finish before "
                               "pushing to %s", str(ws.path), PUSH_LOCK, self.name)
                held.enter_context(file_lock(path))
            return push(self, manifest, ws)

    del locked.__wrapped__  # help() shows the public signature, not the wrapped one
    return locked


@dataclass(frozen=True)
class PushResult:
    """What one push did.

    Attributes
    ----------
    queue : str
        The queue's name (``"label-studio:3@http://127.0.0.1:8080"``, ``"http:https://..."``, ``"file:out.jsonl"``).
    run_id : str
        The batch's run id.
    pushed : tuple
        Ids sent in this call (new tasks), in rank order.
    existing : tuple
        Ids the queue already held (a retried push); not sent again.
    seconds : float
        Wall-clock time of the push.
    """

    queue: str
    run_id: str
    pushed: tuple = ()
    existing: tuple = ()
    seconds: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Ids of the batch that are now in the queue."""
        return len(self.pushed) + len(self.existing)


@runtime_checkable
class Connector(Protocol):
    """A labeling queue alscale can push batches to and pull labels from."""

    name: str

    def push(self, manifest: Any, *, workspace: Any = None) -> PushResult:
        """Send a batch; ids actually sent (or found already there) become pending in ``workspace``."""

    def pull(self, *, workspace: Any = None) -> list[dict]:
        """Return finished annotations; record them in ``workspace`` when given."""

    def pending(self) -> list:
        """Ids in the queue that have no annotation yet."""


@dataclass(frozen=True)
class BatchView:
    """A manifest's rows ready to push.

    Attributes
    ----------
    run_id : str
    classes : list of str
        The model's class names (manifest ``model.classes``); for a batch chosen without a model
        (the seed or evaluation set), the workspace's (manifest ``classes``), if it has any.
    rows : list of dict
        One per selected example, in rank order: ``id``, ``rank``, ``score``,
        ``predicted_class``, ``confidence``, ``strategy`` and ``data`` (a dict of the named
        pool columns, JSON-ready).
    manifest : dict
        The whole ``manifest.json``.
    """

    run_id: str
    classes: list
    rows: list
    manifest: dict

    @property
    def ids(self) -> list:
        return [r["id"] for r in self.rows]

    @property
    def pool_key(self) -> str | None:
        """The key of the manifest's pool (its ``pool.spec``, else its files); None if it names none."""
        pool = self.manifest.get("pool") if isinstance(self.manifest, Mapping) else None
        if not isinstance(pool, Mapping):
            return None
        spec = pool.get("spec") or pool.get("paths")
        if isinstance(spec, (str, list)) and spec and all(isinstance(s, str) for s in ([spec] if isinstance(spec, str) else spec)):
            return pool_key(spec)
        return None


def normalize_data_columns(columns: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Turn ``["text", "img=image_url"]`` or ``{"img": "image_url"}`` into {task key: pool column}."""
    if not columns:
        return {}
    if isinstance(columns, Mapping):
        out = {str(k): str(v) for k, v in columns.items()}
    elif isinstance(columns, str):
        raise ConfigError(f"The 'data_columns' setting must be a list of column names. Got the string {columns!r}.")
    elif not isinstance(columns, Iterable):
        raise ConfigError(f"The 'data_columns' setting must be a list of column names. Got {columns!r}.")
    else:
        out = {}
        for item in columns:
            key, _, column = str(item).partition("=")
            out[key.strip()] = (column or key).strip()
    if any(not k or not v for k, v in out.items()):
        raise ConfigError(f"The 'data_columns' setting must name columns as 'column' or 'key=column'. Got {columns!r}.")
    return out


def _manifest_of(manifest: Any) -> Manifest:
    if isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, (str, os.PathLike)):
        return Manifest.read(manifest)
    if hasattr(manifest, "data") and hasattr(manifest, "batch"):
        return Manifest(path=getattr(manifest, "path", None), data=manifest.data, batch=manifest.batch)
    raise ConfigError(f"Expected a batch manifest (a directory or an alscale.manifest.Manifest). Got {type(manifest).__name__}.")


def load_batch(manifest: Any, data_columns: Sequence[str] | Mapping[str, str] | None = None) -> BatchView:
    """Read a manifest and the named pool columns of its selected rows.

    Parameters
    ----------
    manifest : str, path or Manifest
        A manifest directory (``manifest.json`` + ``batch.parquet``) or a loaded manifest.
    data_columns : list of str or dict, optional
        Pool columns to attach to each row (``"text"`` or ``"key=column"``).

    Returns
    -------
    BatchView

    Raises
    ------
    OutputError
        The manifest cannot be read or lacks required fields.
    PoolSchemaError
        A named column is not in the pool, or a selected id is missing from it.
    """
    m = _manifest_of(manifest)
    needed = ("id", "rank", "score", "predicted_class", "confidence")
    missing = [c for c in needed if c not in m.batch.column_names]
    if missing:
        raise OutputError(f"Expected batch columns {list(needed)} in the manifest. Missing {missing}.")
    if "run_id" not in m.data:
        raise OutputError("Expected a 'run_id' in manifest.json. Got none.")
    # a selection's classes are its model's; a batch chosen without a model (seed, evaluation) names the workspace's
    classes = [str(c) for c in (m.data.get("model") or {}).get("classes") or m.data.get("classes") or []]
    strategy = (m.data.get("strategy") or {}).get("name")
    rows = []
    for r in m.batch.select([c for c in (*needed, "strategy") if c in m.batch.column_names]).to_pylist():
        rows.append({
            "id": r["id"], "rank": int(r["rank"]), "score": float(r["score"]),
            "predicted_class": None if r["predicted_class"] is None else str(r["predicted_class"]),
            "confidence": None if r["confidence"] is None else float(r["confidence"]),
            "strategy": r.get("strategy") or strategy, "data": {},
        })
    mapping = normalize_data_columns(data_columns)
    if mapping and rows:
        pool = m.data.get("pool") or {}
        values = _read_pool_rows(pool, [r["id"] for r in rows], sorted(set(mapping.values())))
        for r in rows:
            found = values.get(r["id"])
            if found is None:
                raise PoolSchemaError(f"Expected selected id {r['id']!r} in the pool {pool.get('paths')!r}. Got no row for it.")
            r["data"] = {key: found[col] for key, col in mapping.items()}
    return BatchView(run_id=str(m.data["run_id"]), classes=classes, rows=rows, manifest=m.data)


def load_batch_for(workspace: Any, manifest: Any, data_columns: Sequence[str] | Mapping[str, str] | None = None) -> BatchView:
    """:func:`load_batch`, checked against ``workspace`` (if any) before anything is sent.

    A batch whose ids the workspace's pool does not hold (a manifest of another pool, string
    ids for an integer pool) would reach the queue and then fail to be recorded as pending;
    this refuses it first.  So is a batch of another pool whose ids the workspace's pool holds
    too: its answers would be taken for labels of the workspace's rows.

    Raises
    ------
    WorkspaceError
        The manifest names another pool than the workspace's, or some of the batch's ids are
        not in the workspace's pool.
    """
    manifest = _manifest_of(manifest)  # read once
    if workspace is not None and "id" in manifest.batch.column_names:  # before data columns are read from the pool
        _require_id_type(manifest.batch.column("id").slice(0, 1).to_pylist(), workspace.id_type == "int64",
                         f"the pool of workspace {str(workspace.path)!r} has", WorkspaceError)
    batch = load_batch(manifest, data_columns)
    if workspace is not None:
        _require_same_pool(workspace, batch)
    if workspace is not None and batch.rows:
        workspace.require_in_pool(batch.ids, what=f"the ids of batch {batch.run_id}")
    return batch


def _require_same_pool(workspace: Any, batch: BatchView) -> None:
    """WorkspaceError if the manifest's ``pool.spec`` is not the workspace's pool (where it was made, or where it is now)."""
    pool = batch.manifest.get("pool") if isinstance(batch.manifest, Mapping) else None
    spec = pool.get("spec") if isinstance(pool, Mapping) else None
    if not spec or not (isinstance(spec, str) or (isinstance(spec, list) and all(isinstance(s, str) for s in spec))):
        return  # a manifest that does not say where its pool was: the ids are all there is to check
    theirs = pool_key(spec)
    if not workspace.owns_pool_key(theirs):
        raise WorkspaceError(
            f"Expected a batch of the pool of workspace {str(workspace.path)!r} ({workspace.config['pool']!r}, "
            f"key {workspace.pool_key}). Got batch {batch.run_id} of the pool {spec!r} (key {theirs}); "
            "select it from the workspace's pool, or push it with that pool's workspace.")


def _pool_files(pool: Mapping[str, Any]) -> list[str]:
    files = [f["path"] for f in pool.get("files") or [] if isinstance(f, Mapping) and f.get("path")]
    if files:
        return files
    paths = pool.get("paths") or pool.get("path") or []
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[str] = []
    for p in map(str, paths):
        if "://" in p:
            out.append(p)
        elif any(ch in p for ch in "*?["):
            out.extend(glob_files(p))  # as the engine reads a glob: '.'/'_' names skipped
        elif os.path.isdir(p):
            out.extend(folder_files(p))  # as the engine lists a folder
        else:
            out.append(p)
    if not out:
        raise PoolSchemaError(f"Expected the manifest's pool.paths to name Parquet files. Got {pool.get('paths')!r}.")
    return out


def _read_pool_rows(pool: Mapping[str, Any], ids: list, columns: list[str]) -> dict:
    """{id: {column: JSON-ready value}} for the selected ids only (a dataset filter on the id)."""
    id_column = pool.get("id_column") or "id"
    try:
        dataset = ds.dataset(_pool_files(pool), format="parquet")
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise PoolSchemaError(f"Cannot open the pool {pool.get('paths')!r}: {first_line(exc)}") from None
    names = dataset.schema.names
    absent = [c for c in [id_column, *columns] if c not in names]
    if absent:
        raise PoolSchemaError(f"Expected columns {absent} in the pool. Got columns {names}.")
    id_type = dataset.schema.field(id_column).type
    _require_id_type(ids, pa.types.is_integer(id_type), f"the pool's id column {id_column!r} ({id_type})")
    table = dataset.to_table(columns=[id_column, *columns], filter=pc.field(id_column).isin(pa.array(ids, id_type)))
    out = {}
    for row in table.to_pylist():
        out[row[id_column]] = {c: _jsonable(row[c]) for c in columns}
    return out


def _require_id_type(ids: list, integer: bool, what: str, error: type[Exception] = PoolSchemaError) -> None:
    """``error`` unless the batch's ids are of the pool's kind: ints for integer ids, strings for string ids.

    Digit strings are not taken for integers: a batch of ``"1000"`` comes from a pool of string ids.
    A batch's ids are one column of one type, so the first tells.
    """
    if ids and isinstance(ids[0], str) == integer:
        raise error(f"Expected a batch of {'integer' if integer else 'string'} ids, as {what}. Got {ids[0]!r}; "
                    "the batch was selected from another pool.")


def _jsonable(value: Any) -> Any:
    """A pool value as JSON can carry it: bytes as base64, times as ISO 8601, NaN and infinity as null."""
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no NaN: a receiver's parser would refuse it
        return None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):  # a decimal column: its exact text (JSON numbers are binary floats)
        return str(value)
    return value


def sent_here(workspace: Any, queue: str, records: list[dict], *, warn: bool = True) -> list[dict]:
    """The label records for ids ``workspace`` sent to ``queue``.

    An id is the workspace's in ``queue`` while it is pending there, once the workspace keeps any
    answer from there (a cancelled one too), and for good where the record's task carries the
    run id (``batch_run_id``) of a batch the workspace sent there
    (:meth:`alscale.loop.workspace.Workspace.sent_runs`, kept before the push sends anything).
    So an answer fixed after an empty submission, a second project's answers to a batch the
    first answered, and the answers to a chunk a killed push sent but never recorded are all
    taken.  A project can hold tasks of several workspaces over one pool; a label for an id this
    workspace never sent there belongs to another workspace's task and is left out, with a
    warning that counts them unless ``warn`` is False (the caller says so itself).  (Tasks of
    other pools, whose ids may be the same, are told apart by their pool key before this.)
    """
    pending = workspace.pending()
    sent = {i for i, q in zip(pending.column("id").to_pylist(), pending.column("queue").to_pylist()) if q == queue}
    log = workspace.label_log()
    sent.update(i for i, src in zip(log.column("id").to_pylist(), log.column("source").to_pylist()) if src == queue)
    runs = workspace.sent_runs(queue)
    runs.discard(None)
    ours, others = [], []
    for r in records:
        (ours if r["id"] in sent or r.get("batch_run_id") in runs else others).append(r)
    if others and warn:
        logger.warning("left out %d label record(s) of tasks this workspace did not send to %s, e.g. id %r: not pending there, "
                       "never answered there, and of no batch it sent there (another workspace's task, or one pushed "
                       "without a workspace; push its batch with this workspace to take its answers)", len(others), queue,
                       others[0]["id"])
    return ours


def open_workspace(workspace: Any):
    """A :class:`alscale.loop.workspace.Workspace` from a path or an open workspace (None stays None)."""
    if workspace is None:
        return None
    if isinstance(workspace, (str, os.PathLike)):
        from alscale.loop.workspace import Workspace

        return Workspace.open(workspace)
    if not hasattr(workspace, "add_pending") or not hasattr(workspace, "record_labels"):
        raise WorkspaceError(f"Expected a workspace (a path or alscale.loop.workspace.Workspace). Got {type(workspace).__name__}.")
    return workspace
