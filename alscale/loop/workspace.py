"""The active-learning workspace: a directory that holds the loop's state.

Layout::

    <workspace>/
      alscale-workspace.json     config: schema_version, pool and its key, model, id/label/group columns,
                                 classes, settings, evaluation/stop set sizes and seeds
      .lock                      fcntl lock taken by every writer
      .round.lock                fcntl lock held by the one round running (alscale round)
      state/HEAD.json            {"version": n, "labels": ..., "pending": ..., "sent": {queue: [batch run ids]}}
      state/labels-<n>.parquet   every label record (one per (source, annotation_id))
      state/pending-<n>.parquet  ids sent to annotators and not answered yet
      state/evaluation.parquet   the evaluation set (reserved once, at creation)
      state/stopset.parquet      the stop set (for the stabilizing-predictions rule)
      evaluation/                the evaluation set as a batch manifest, to push to a labeling queue
      rounds/NNN/                one folder per round: model.onnx, metrics.json, batch, ...

Every change to the labels and pending tables writes *new* versioned files (temp file, fsync,
rename) and then replaces ``HEAD.json`` atomically, so the two tables always change together: a
crash before the HEAD swap leaves the previous state (plus orphan files, removed by the next
writer), a crash after it leaves the new one.  Writers hold an exclusive ``fcntl.flock`` on
``.lock``, so a webhook receiver and a CLI can write at the same time.  Every write is
idempotent: re-adding a pending id or re-recording the same annotation changes nothing.
"""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alscale.exceptions import AlscaleError, LabelError, WorkspaceError, first_line, short_repr
from alscale.loop import _pool
from alscale.loop._io import atomic_write_json, atomic_write_parquet, file_lock, read_json
from alscale.pool.identity import pool_key
from alscale.loop.idbatch import id_batch_run_id, write_id_batch
from alscale.loop.labellog import (
    answer_order,
    disagreeing,
    id_arrow_type,
    is_older,
    labels_schema,
    normalized_records,
    pending_schema,
    record_key,
    renamed_pending,
    renamed_records,
    warn_of_disagreements,
    warn_of_new_classes,
)
from alscale.loop.settings import DEFAULT_SETTINGS
from alscale.loop.workspace_config import CONFIG_NAME, SCHEMA_VERSION, now_iso, plan_workspace, read_config
from alscale.manifest import Manifest

__all__ = ["CONFIG_NAME", "SCHEMA_VERSION", "Workspace"]

logger = logging.getLogger(__name__)

class Workspace:
    """A directory holding the state of one active-learning loop.

    Use :meth:`create` once, then :meth:`open`.

    Attributes
    ----------
    path : pathlib.Path
        The workspace directory.
    config : dict
        The parsed ``alscale-workspace.json``.
    """

    def __init__(self, path: pathlib.Path, config: dict):
        self.path = pathlib.Path(path)
        self.config = config
        self._pool_ids: np.ndarray | None = None

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path,
        *,
        pool,
        model=None,
        id_column: str = "id",
        label_column: str | None = None,
        classes: Sequence | None = None,
        group_columns: Sequence[str] = (),
        settings: dict | None = None,
    ) -> Workspace:
        """Create a workspace at ``path`` and reserve its evaluation and stop sets.

        Everything is checked and computed before anything is written; the config file is
        written last, so a failed or interrupted ``create`` leaves no workspace behind.

        Parameters
        ----------
        path : str or path
            Directory (created; must not hold a workspace already).
        pool : str or path or list
            Parquet file, directory or glob.
        model : str or path, optional
            An ONNX model file that every round uses instead of the built-in trainer, for teams
            that train their own model: write the retrained model to the same path between
            rounds (``run_round(model=...)`` overrides it for one round).  It must name its
            classes (metadata ``alscale.classes``, or a skl2onnx classifier's class labels): the
            workspace's classes, in order, where it has a class list.
        id_column : str
        label_column : str, optional
            An oracle label column in the pool (simulation, or a pool that is partly labeled).
        classes : sequence, optional
            Known class names; taken from ``label_column`` when omitted.  With neither, any
            label is accepted.
        group_columns : sequence of str
            Pool columns whose distribution the composition report watches.
        settings : dict, optional
            Loop settings (see :data:`alscale.loop.settings.DEFAULT_SETTINGS`); unknown keys are an error.  ``eval_seed``
            defaults to ``seed``, as with ``alscale init --seed``.

        Returns
        -------
        Workspace

        Raises
        ------
        WorkspaceError
            If ``path`` already holds a workspace.
        ConfigError, PoolError
            For an argument of the wrong type, bad settings (a budget smaller than the seed set,
            a hint column without the 'hint' initial method), a missing column, values of
            ``label_column`` outside ``classes``, or an evaluation set larger than the pool.
        DuplicateIdError
            The pool holds an id twice (a :class:`PoolError`).
        ModelError
            ``model`` is not a readable ONNX file.
        ModelContractError
            ``model`` names no classes, or other ones than the workspace's.
        StrategyError
            The strategy needs an embedding output (badge, coreset, cluster-margin) and ``model`` has none.
        """
        plan = plan_workspace(path, pool=pool, model=model, id_column=id_column, label_column=label_column, classes=classes,
                              group_columns=group_columns, settings=settings)
        path, config, id_type = plan.path, plan.config, id_arrow_type(plan.config["id_type"])
        (path / "state").mkdir(parents=True, exist_ok=True)
        (path / "rounds").mkdir(exist_ok=True)
        atomic_write_parquet(path / "state" / "evaluation.parquet", pa.table({"id": pa.array(plan.evaluation_ids, id_type)}))
        atomic_write_parquet(path / "state" / "stopset.parquet", pa.table({"id": pa.array(plan.stop_set_ids, id_type)}))
        ws = cls(path, config)
        ws._pool_ids = plan.ids
        ws.evaluation_batch()
        atomic_write_json(path / CONFIG_NAME, config)  # last: its presence makes the workspace
        return ws

    @classmethod
    def open(cls, path) -> Workspace:
        """Open an existing workspace.

        Parameters
        ----------
        path : str or path
            The workspace directory.

        Returns
        -------
        Workspace

        Raises
        ------
        ConfigError
            If ``path`` is not a str or os.PathLike.
        WorkspaceError
            If there is no workspace at ``path``, it was written by a newer alscale, or its
            config file lacks a key alscale reads or holds one of the wrong type (edited by hand).
        """
        from alscale.config import check_path

        path = pathlib.Path(check_path("path", path))
        return cls(path, read_config(path))

    # ------------------------------------------------------------------ properties
    @property
    def id_type(self) -> str:
        return self.config.get("id_type", "int64")

    @property
    def pool_key(self) -> str:
        """The pool's key (:func:`alscale.pool.identity.pool_key`), fixed when the workspace was made.

        It marks this pool's tasks in a shared labeling queue, and stays the same if the pool's
        path in ``alscale-workspace.json`` is edited after the pool moved.  A workspace made before
        the key was stored gets the key of its pool's path, written into its config on first use
        (where the folder is writable), so that it too keeps it.
        """
        key = self.config.get("pool_key")
        if isinstance(key, str) and key:
            return key
        key = pool_key(self.config["pool"])
        try:
            with self._lock():
                config = read_json(self.path / CONFIG_NAME)
                if not (isinstance(config.get("pool_key"), str) and config["pool_key"]):
                    config["pool_key"] = key
                    atomic_write_json(self.path / CONFIG_NAME, config)
                key = config["pool_key"]
        except (OSError, ValueError, AttributeError) as exc:  # a read-only workspace: the derived key, not kept
            logger.debug("could not store the pool key in %s: %s", self.path, exc)
        self.config["pool_key"] = key
        return key

    def owns_pool_key(self, key: str | None) -> bool:
        """Whether ``key`` names this workspace's pool: the key it was made with, or that of its pool's path now."""
        return key is not None and key in (self.pool_key, pool_key(self.config["pool"]))

    @property
    def classes(self) -> list | None:
        return self.config.get("classes")

    @property
    def settings(self) -> dict:
        return {**DEFAULT_SETTINGS, **self.config.get("settings", {})}

    @property
    def rounds_dir(self) -> pathlib.Path:
        return self.path / "rounds"

    def _ids(self, ids) -> np.ndarray:
        try:
            return _pool.as_ids(ids, self.id_type)
        except AlscaleError as exc:
            raise LabelError(str(exc)) from None

    def pool_ids(self) -> np.ndarray:
        """Every id of the pool (read once from the id column, then cached)."""
        if self._pool_ids is None:
            col = _pool.read_columns(self.config["pool"], [], id_column=self.config["id_column"]).column(self.config["id_column"])
            self._pool_ids = _pool.as_ids(col, self.id_type)
        return self._pool_ids

    def ids_outside_pool(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """``ids`` in the pool's id type, and a mask of those the pool does not hold.

        Returns
        -------
        ids : ndarray of shape (m,)
        outside : ndarray of shape (m,), bool

        Raises
        ------
        LabelError
            An id cannot be read as the pool's id type (e.g. a string for integer ids).
        """
        ids = self._ids(ids)
        pool_ids = self.pool_ids()
        if self.id_type == "int64":
            return ids, ~np.isin(ids, pool_ids)
        pool_set = set(pool_ids.tolist())
        return ids, np.array([v not in pool_set for v in ids.tolist()], dtype=bool)

    def require_in_pool(self, ids, *, what: str) -> None:
        """Raise WorkspaceError unless every id is one of the pool's (``what`` names the ids)."""
        try:
            ids, outside = self.ids_outside_pool(ids)
        except LabelError as exc:
            raise WorkspaceError(f"{what} do not fit workspace {str(self.path)!r}: {exc}") from None
        if outside.any():
            raise WorkspaceError(f"Expected {what} in workspace {str(self.path)!r}'s pool {self.config['pool']!r}. "
                                 f"Got {int(outside.sum())} ids not in it, e.g. {ids[outside][:5].tolist()}.")

    def evaluation_ids(self) -> np.ndarray:
        """The reserved evaluation set, shape (n_eval,)."""
        return self._reserved_ids("evaluation")

    def stop_set_ids(self) -> np.ndarray:
        """The fixed random stop set, shape (n_stop,)."""
        return self._reserved_ids("stop_set")

    def _reserved_ids(self, which: str) -> np.ndarray:
        """The ids of the reserved set ``which`` ("evaluation" or "stop_set"), from the file the config names."""
        where = f"Cannot read the workspace's {which.replace('_', ' ')} ({which}.file in {CONFIG_NAME})"
        entry = self.config.get(which)
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)):
            raise WorkspaceError(f"{where}: the config names no file.")
        path = self.path / entry["file"]
        try:
            return self._ids(pq.read_table(path).column("id"))
        except (OSError, KeyError, pa.ArrowException) as exc:  # config or state edited by hand
            detail = f"no such file {str(path)!r}" if isinstance(exc, FileNotFoundError) else first_line(exc)
            raise WorkspaceError(f"{where}: {detail}.") from None

    # ------------------------------------------------------------------ state files
    def _lock(self):
        return file_lock(self.path / ".lock")

    def _head(self) -> dict:
        """``state/HEAD.json``: the state version and the files of its labels and pending tables.

        Raises
        ------
        WorkspaceError
            HEAD.json is missing while state files exist (read as empty, the next write would
            delete them), or it is not what alscale wrote.
        """
        head_path = self.path / "state" / "HEAD.json"
        if not head_path.exists():
            kept = sorted(f.name for f in self._state_files())
            if kept:  # the newest of each kind is the likely HEAD, but a crash may have left a newer orphan: not guessed
                newest = {kind: max((f for f in kept if f.startswith(kind + "-")), default=None) for kind in ("labels", "pending")}
                version = max(int(f.split("-")[1].split(".")[0]) for f in kept)
                suggestion = json.dumps({"version": version, **newest})
                raise WorkspaceError(f"Expected {str(head_path)!r}, which names the current state files. Got none beside "
                                     f"{', '.join(kept)}; restore it from a backup, or, if the newest files are the current "
                                     f"ones, write {suggestion} into it.")
            return {"version": 0, "labels": None, "pending": None}
        try:
            head = read_json(head_path)
        except (ValueError, OSError) as exc:
            raise WorkspaceError(f"Expected valid JSON in {str(head_path)!r}. Got: {exc}") from None
        if not (isinstance(head, dict) and isinstance(head.get("version"), int)
                and all(head.get(name) is None or isinstance(head.get(name), str) for name in ("labels", "pending"))):
            raise WorkspaceError(f"Expected {str(head_path)!r} to hold a version and the labels and pending file names. "
                                 f"Got {short_repr(head)}.")
        return head

    def _read_current(self, which: str, schema: pa.Schema) -> pa.Table:
        """The current version of a state table, read under a shared lock.

        Writers replace HEAD and delete superseded versions under the exclusive lock, so a
        reader holding the shared one never sees HEAD point at a deleted file.
        """
        with file_lock(self.path / ".lock", shared=True):
            return self._read_table(self._head().get(which), schema)

    def _read_table(self, name: str | None, schema: pa.Schema) -> pa.Table:
        if not name:
            return schema.empty_table()
        try:
            table = pq.read_table(self.path / "state" / name)
        except (OSError, pa.ArrowException) as exc:  # deleted or damaged by hand: say which file
            raise WorkspaceError(f"Cannot read the workspace state file {str(self.path / 'state' / name)!r}, which "
                                 f"state/HEAD.json names: {first_line(exc)}") from None
        for field in schema:  # a column added since the file was written (answered_at): null for old rows
            if field.name not in table.column_names:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        return table.select(schema.names).cast(schema)

    def _commit(self, head: dict, *, labels: pa.Table | None = None, pending: pa.Table | None = None) -> None:
        """Write new table versions, then swap HEAD.json (caller holds the lock)."""
        version = int(head["version"]) + 1
        new = dict(head, version=version)
        if labels is not None:
            new["labels"] = f"labels-{version:08d}.parquet"
            atomic_write_parquet(self.path / "state" / new["labels"], labels)
        if pending is not None:
            new["pending"] = f"pending-{version:08d}.parquet"
            atomic_write_parquet(self.path / "state" / new["pending"], pending)
        new["updated_at"] = now_iso()
        atomic_write_json(self.path / "state" / "HEAD.json", new)
        self._collect_garbage(new)

    def _state_files(self) -> list[pathlib.Path]:
        """Every version of the labels and pending tables in ``state/`` (the current ones and any left over)."""
        return [f for f in (self.path / "state").glob("*-*.parquet") if f.name.startswith(("labels-", "pending-"))]

    def _collect_garbage(self, head: dict) -> None:
        keep = {head.get("labels"), head.get("pending")}
        for f in self._state_files():
            if f.name not in keep:
                try:
                    f.unlink()
                except OSError:  # pragma: no cover - another reader/writer raced us
                    pass

    # ------------------------------------------------------------------ pending
    def pending(self) -> pa.Table:
        """Ids sent to annotators and not answered: columns id, batch_run_id, queue, sent_at (a row per id and queue)."""
        return self._read_current("pending", pending_schema(self.id_type))

    def add_pending(self, ids, *, batch_run_id: str, queue: str) -> int:
        """Mark ids as sent to a labeling queue; ids already pending there, or answered, are left as they are.

        An id that has an answer (a label, a skip, or an empty submission) is not pending even when
        it is sent again: the queue does not serve an answered task again, and a new answer
        replaces the old one when it comes.  An id may be pending in several queues
        (a batch pushed to a second project after the first was the wrong one): answers from
        each are taken, and the first one ends its pending in all of them.

        Parameters
        ----------
        ids : array-like of shape (m,)
            Ids of the pool.
        batch_run_id, queue : str

        Returns
        -------
        int
            The number of ids newly pending in ``queue``.

        Raises
        ------
        WorkspaceError
            ``ids`` is not a list of the pool's ids (an id of another type, or not in the pool);
            nothing is recorded.
        """
        ids = list(ids) if isinstance(ids, Iterator) else ids  # read once, checked and recorded
        self.require_in_pool(ids, what="pending ids")
        new_ids = self._ids(ids)
        with self._lock():
            head = self._head()
            table = self._read_table(head.get("pending"), pending_schema(self.id_type))
            ids_there = self._ids(table.column("id")).tolist()
            have = {v for v, q in zip(ids_there, table.column("queue").to_pylist()) if q == str(queue)}
            have.update(self._answered_ids(head))
            fresh, seen = [], set()
            for v in new_ids.tolist():
                if v not in have and v not in seen:
                    fresh.append(v)
                    seen.add(v)
            if not fresh:
                return 0
            now = now_iso()
            add = pa.table({"id": pa.array(fresh, id_arrow_type(self.id_type)), "batch_run_id": [str(batch_run_id)] * len(fresh),
                            "queue": [str(queue)] * len(fresh), "sent_at": [now] * len(fresh)}, schema=pending_schema(self.id_type))
            self._commit(head, pending=pa.concat_tables([table, add]))
            return len(fresh)

    def add_sent(self, queue: str, batch_run_id: str) -> None:
        """Keep for good that batch ``batch_run_id`` is sent to ``queue``: written before any of its tasks is.

        Pending rows end when an id is answered; this does not, so a queue's answers to the batch's
        tasks stay this workspace's whatever came before them (a cancelled answer, an answer from
        another queue) and whether or not the push that sent them lived to record them as pending
        (:meth:`sent_runs`).
        """
        queue, run = str(queue), str(batch_run_id)
        with self._lock():
            head = self._head()
            sent = self._sent(head)
            if run in sent.get(queue, ()):
                return
            self._commit(dict(head, sent={**sent, queue: [*sent.get(queue, []), run]}))

    def sent_runs(self, queue: str) -> set:
        """Run ids of the batches sent to ``queue``: those :meth:`add_sent` kept, and those of ids pending there."""
        with file_lock(self.path / ".lock", shared=True):
            head = self._head()
            pending = self._read_table(head.get("pending"), pending_schema(self.id_type))
        runs = set(self._sent(head).get(str(queue), ()))
        runs.update(r for r, q in zip(pending.column("batch_run_id").to_pylist(), pending.column("queue").to_pylist()) if q == str(queue))
        return runs

    def _sent(self, head: dict) -> dict:
        """HEAD's ``sent`` ({queue: [batch run ids]}); WorkspaceError where it is not what alscale wrote."""
        sent = head.get("sent") or {}
        if not (isinstance(sent, dict) and all(isinstance(v, list) and all(isinstance(r, str) for r in v) for v in sent.values())):
            raise WorkspaceError(f"Expected the 'sent' of {str(self.path / 'state' / 'HEAD.json')!r} to map queues to lists of "
                                 f"batch run ids. Got {short_repr(sent)}.")
        return sent

    def queue_names(self) -> set[str]:
        """Every queue name the workspace keeps something under: label sources, queues of pending ids, of sent batches."""
        with file_lock(self.path / ".lock", shared=True):
            head = self._head()
            labels = self._read_table(head.get("labels"), labels_schema(self.id_type))
            pending = self._read_table(head.get("pending"), pending_schema(self.id_type))
        return {*labels.column("source").to_pylist(), *pending.column("queue").to_pylist(), *self._sent(head)}

    def rename_queue(self, old: str, new: str) -> dict[str, int]:
        """Name ``new`` what the workspace keeps under the queue name ``old``: label records, pending ids, sent batches.

        For a queue whose name changed (Label Studio's came to carry the server).  Everything is
        renamed in one commit (new table files, then one swap of ``HEAD.json``), so a crash leaves
        all of it renamed or none.  A record whose new key (:func:`alscale.loop.labellog.record_key`)
        another holds already keeps the later answer; an id pending under both names is pending
        once; the sent batches of both are kept.

        Parameters
        ----------
        old, new : str
            Queue names.

        Returns
        -------
        dict
            ``{"labels", "pending", "sent"}``: how many label records, pending rows and sent batches
            were under ``old`` (all 0: nothing was, and nothing is written).
        """
        old, new = str(old), str(new)
        with self._lock():
            head = self._head()
            labels = self._read_table(head.get("labels"), labels_schema(self.id_type))
            pending = self._read_table(head.get("pending"), pending_schema(self.id_type))
            sent = self._sent(head)
            counts = {"labels": labels.column("source").to_pylist().count(old),
                      "pending": pending.column("queue").to_pylist().count(old), "sent": len(sent.get(old, ()))}
            if old == new or not any(counts.values()):
                return dict.fromkeys(counts, 0)
            runs = list(dict.fromkeys([*sent.get(new, ()), *sent.get(old, ())]))
            moved = {**{q: r for q, r in sent.items() if q != old}, new: runs} if counts["sent"] else sent
            self._commit(dict(head, sent=moved),
                         labels=pa.Table.from_pylist(renamed_records(labels.to_pylist(), old, new), schema=labels.schema)
                         if counts["labels"] else None,
                         pending=pa.Table.from_pylist(renamed_pending(pending.to_pylist(), old, new), schema=pending.schema)
                         if counts["pending"] else None)
        return counts

    def _answered_ids(self, head: dict) -> list:
        """Ids with any answer (labeled, skipped or cancelled) in the label log of ``head`` (caller holds the lock)."""
        log = self._read_table(head.get("labels"), labels_schema(self.id_type))
        return self._ids(log.column("id")).tolist()

    def answered_ids(self) -> np.ndarray:
        """Ids with any answer kept: labeled, skipped, or cancelled (submitted with no choice).

        A cancelled answer is an answer with no label: the queue holds it as answered and does
        not serve the task again, so its id is neither pending again when its batch is pushed
        again nor selected again.  A later answer on it (the annotator fixes it) is taken as usual.
        """
        with file_lock(self.path / ".lock", shared=True):
            head = self._head()
            ids = self._answered_ids(head)
        return self._ids(sorted(set(ids)))

    def remove_pending(self, ids) -> int:
        """Drop ids from the pending table.

        Parameters
        ----------
        ids : array-like of shape (m,)

        Returns
        -------
        int
            How many of them were pending.

        Raises
        ------
        LabelError
            ``ids`` is not a list of ids of the pool's type (None, one id, strings for integer ids).
        """
        drop = set(self._ids(ids).tolist())
        with self._lock():
            head = self._head()
            table = self._read_table(head.get("pending"), pending_schema(self.id_type))
            keep = np.array([v not in drop for v in self._ids(table.column("id")).tolist()], dtype=bool)
            removed = int(len(keep) - keep.sum())
            if removed:
                self._commit(head, pending=table.filter(pa.array(keep)))
            return removed

    # ------------------------------------------------------------------ labels
    def record_labels(self, records: Iterable[dict], *, skip_invalid: bool = False) -> int:
        """Record annotations; idempotent on ``(source, annotation_id)``.

        Parameters
        ----------
        records : iterable of dict, or pyarrow.Table
            Each ``{"id", "label", "status", "source", "annotation_id", "annotator"}`` (a
            table: one record per row, its columns those keys);
            ``label`` is None for a skipped or cancelled task; ``status`` defaults to
            "labeled".  Without an ``annotation_id`` the key is ``(source, id, annotator)``.  An optional
            ``answered_at`` (ISO 8601, the queue's own time of the answer) orders versions of one
            annotation: a record older than the one kept under its key changes nothing, so
            webhooks that arrive late or are replayed never undo a newer answer.
        skip_invalid : bool, default False
            Leave out (with a warning that counts them) the records that would be rejected,
            and record the others: for a queue shared with other workspaces, whose answers
            are not all this workspace's.

        Returns
        -------
        int
            The number of new or changed records.

        Raises
        ------
        LabelError
            For records that are not a list of dicts (or a table) with an ``id``, a label outside
            the known classes, an unknown status, an id not in the pool, or two different
            answers under one key in the same call.  Unless ``skip_invalid``, the
            whole call is rejected; nothing is written.
        """
        rows, problems = self._label_rows(records)
        if problems and not skip_invalid:
            more = f" ({len(problems) - 1} more record(s) refused too, e.g. id {rows[problems[1][0]]['id']!r}: {problems[1][1]})" if len(problems) > 1 else ""
            raise LabelError(f"id {rows[problems[0][0]]['id']!r}: {problems[0][1]}{more}")
        if problems:
            logger.warning("left out %d label record(s) this workspace cannot take, e.g. id %r: %s", len(problems),
                           rows[problems[0][0]]["id"], problems[0][1])
            bad = {i for i, _ in problems}
            rows = [r for i, r in enumerate(rows) if i not in bad]
        if not rows:
            return 0
        seen: dict[tuple, dict] = {}
        for r in rows:
            first = seen.setdefault(record_key(r), r)
            if first is not r and (first["label"], first["status"]) != (r["label"], r["status"]):
                raise LabelError(f"Expected one answer per id from {r['source']!r}. Got {first['label'] or first['status']!r} "
                                 f"and {r['label'] or r['status']!r} for id {r['id']!r}.")

        with self._lock():
            head = self._head()
            table = self._read_table(head.get("labels"), labels_schema(self.id_type))
            log = {}
            for r in table.to_pylist():
                log[record_key(r)] = r
            if self.classes is None:
                warn_of_new_classes(rows, log.values())
            seq = max((r["seq"] for r in log.values()), default=0)
            changed, changed_ids = 0, set()
            for r in rows:
                key = record_key(r)
                old = log.get(key)
                if old is not None and (all(old[f] == r[f] for f in ("id", "label", "status", "annotator")) or is_older(r, old)):
                    continue  # the same answer again, or an older version of the one kept
                seq += 1
                log[key] = {**r, "labeled_at": now_iso(), "seq": seq}
                changed += 1
                changed_ids.add(r["id"])
            resolved = {r["id"] for r in rows}
            pending = self._read_table(head.get("pending"), pending_schema(self.id_type))
            keep = np.array([v not in resolved for v in self._ids(pending.column("id")).tolist()], dtype=bool)
            if changed == 0 and keep.all():
                return 0
            ordered = sorted(log.values(), key=lambda r: r["seq"])
            labels = pa.Table.from_pylist(ordered, schema=labels_schema(self.id_type))
            self._commit(head, labels=labels if changed else None, pending=pending.filter(pa.array(keep)) if not keep.all() else None)
        if changed:  # only ids this call changed: a pull sends every answer again, and each is warned of once
            warn_of_disagreements(disagreeing(ordered, changed_ids))
        return changed

    def refused_labels(self, records: list[dict]) -> set[int]:
        """Positions in ``records`` of those :meth:`record_labels` refuses (or leaves out with ``skip_invalid``)."""
        return {i for i, _ in self._label_rows(records)[1]}

    def _label_rows(self, records: Iterable[dict]) -> tuple[list[dict], list[tuple[int, str]]]:
        """Normalized label rows, and ``(row index, reason)`` for each one the workspace cannot take."""
        rows, problems = normalized_records(records, self.classes)
        try:
            ids = self._ids([r["id"] for r in rows]).tolist()
        except LabelError:  # some id is not of the pool's type: find which
            ids, refused = [], {i for i, _ in problems}
            for i, r in enumerate(rows):
                try:
                    ids.append(self._ids([r["id"]]).tolist()[0])
                except LabelError as exc:
                    if i not in refused:  # one problem per record: a record refused for its label is counted once
                        problems.append((i, str(exc)))
                    ids.append(r["id"])
        bad = {i for i, _ in problems}
        good = [i for i in range(len(rows)) if i not in bad]
        for i in good:
            rows[i]["id"] = ids[i]
        if good:
            in_type, outside = self.ids_outside_pool([ids[i] for i in good])
            if outside.any():
                reason = f"Expected label ids from the pool. Got {int(outside.sum())} ids not in the pool, e.g. {in_type[outside][:5].tolist()}."
                problems += [(i, reason) for i, out in zip(good, outside.tolist()) if out]
        return rows, sorted(problems)

    def label_log(self) -> pa.Table:
        """Every label record ever kept (one per ``(source, annotation_id)``), oldest first."""
        return self._read_current("labels", labels_schema(self.id_type))

    def labeled(self) -> pa.Table:
        """The current labeled set, one row per id.

        An id's row is its latest "labeled" record, or, with none, its latest "skipped" one;
        cancelled records do not count.  Latest is by the time of the answer
        (:func:`alscale.loop.labellog.answer_order`: the queue's ``answered_at`` where it gave
        one, else when the workspace kept the record), not by the order records arrived.

        Returns
        -------
        pyarrow.Table
            Columns id, label, source, annotation_id, labeled_at, status.
        """
        log = self.label_log()
        cols = ["id", "label", "source", "annotation_id", "labeled_at", "status"]
        if log.num_rows == 0:
            return log.select(cols)
        best: dict = {}
        for r in sorted(log.to_pylist(), key=answer_order):  # each id's answers in the order they were given
            if r["status"] == "cancelled":
                continue
            cur = best.get(r["id"])
            if cur is None or r["status"] == "labeled" or cur["status"] == "skipped":
                best[r["id"]] = r
        rows = sorted(best.values(), key=lambda r: r["seq"])
        return pa.Table.from_pylist(rows, schema=labels_schema(self.id_type)).select(cols)

    def evaluation_batch(self) -> pathlib.Path | None:
        """The evaluation set as a batch manifest, ``<workspace>/evaluation``, to send to a labeling queue.

        Push it like any batch (``alscale push WS/evaluation -w WS ...``): its ids become pending
        in that queue, and the queue's answers on them are recorded as the evaluation set's
        labels.  Written at creation, or on first use for a workspace made before that.

        Returns
        -------
        pathlib.Path or None
            None for an empty evaluation set, or a workspace whose label column labels it.
        """
        if self.config.get("label_column") or not self.config["evaluation"]["size"]:
            return None
        out = self.path / "evaluation"
        ids = self.evaluation_ids()
        seed = int(self.config["evaluation"]["seed"])
        if not _holds_batch(out, ids):  # none yet, or one left by an earlier workspace at this path
            with self._lock():
                if not _holds_batch(out, ids):
                    write_id_batch(out, ids, id_type=self.id_type, strategy="evaluation",
                                   run_id=id_batch_run_id("evaluation", self.path.name, seed, ids, self.pool_key), seed=seed,
                                   pool=self.config["pool"], id_column=self.config["id_column"], classes=self.classes)
        return out

    def disagreements(self) -> list[dict]:
        """Ids whose kept answers disagree: "labeled" records of two or more labels.

        Several annotators on one task, or a label file and a queue, may answer one id
        differently.  The labeled set (:meth:`labeled`) trains on the latest of them; this says
        where that choice was made, for a second look.

        Returns
        -------
        list of dict
            One per such id, in id order: ``{"id", "labels", "used"}``, ``labels`` the
            ``(label, annotator, source)`` of each kept record, oldest first, and ``used`` the
            label the labeled set holds.
        """
        return disagreeing(self.label_log().to_pylist())

    def excluded_ids(self) -> np.ndarray:
        """Ids selection must skip: answered (labeled, skipped or cancelled), pending, and the evaluation set.

        Returns
        -------
        ndarray of shape (m,)
            Unique ids, int64 or str objects.
        """
        parts = [self._ids(self.answered_ids()), self._ids(self.pending().column("id")), self.evaluation_ids()]
        merged = np.concatenate(parts) if any(len(p) for p in parts) else parts[0]
        if self.id_type == "int64":
            return np.unique(merged.astype(np.int64))
        return np.array(sorted(set(merged.tolist())), dtype=object)

    def training_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids and labels (str) that may be trained on: status "labeled", not in the evaluation set."""
        table = self.labeled()
        mask = np.array([s == "labeled" for s in table.column("status").to_pylist()], dtype=bool)
        ids = self._ids(table.column("id"))[mask]
        labels = np.array(table.column("label").to_pylist(), dtype=object)[mask]
        keep = ~np.isin(ids, self.evaluation_ids())
        return ids[keep], labels[keep]

    def label_counts(self) -> dict[str, int]:
        """How many ids of the labeled set are what.

        Returns
        -------
        dict
            ``training`` (labeled, outside the evaluation set: what the budget counts),
            ``evaluation`` (labeled, in the evaluation set), ``skipped``, and ``cancelled``: ids
            whose only answers were submitted with no choice (answered, no label; never selected again).
        """
        table = self.labeled()
        statuses = np.array(table.column("status").to_pylist(), dtype=object)
        in_eval = np.isin(self._ids(table.column("id")), self.evaluation_ids())
        labeled = statuses == "labeled"
        cancelled = len(set(self.answered_ids().tolist()) - set(self._ids(table.column("id")).tolist()))
        return {"training": int((labeled & ~in_eval).sum()), "evaluation": int((labeled & in_eval).sum()),
                "skipped": int((statuses == "skipped").sum()), "cancelled": cancelled}

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"


def _holds_batch(folder: pathlib.Path, ids: np.ndarray) -> bool:
    """Whether ``folder`` holds an evaluation batch manifest of exactly ``ids``, in that order.

    Its run id is not compared: one written before run ids carried a digest of the ids keeps
    its own, which a queue may already know it by.
    """
    try:
        m = Manifest.read(folder)
    except AlscaleError:
        return False
    return (str(m.data.get("run_id", "")).startswith("evaluation-") and m.batch.column("id").to_pylist() == ids.tolist())
