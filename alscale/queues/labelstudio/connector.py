"""The Label Studio labeling queue: push a batch as tasks, pull annotations into a workspace.

See the package's docstring for what a task holds, how duplicates are kept out, and queue names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from alscale.exceptions import QueueError, QueueUnavailableError
from alscale.queues._http import NOT_PROCESSED_STATUS, backoff_delays, check_response, describe_failure, redact
from alscale.queues.base import BatchView, PushResult, load_batch_for, one_push_at_a_time, open_workspace, sent_here
from alscale.queues.labelstudio import tasks as _tasks
from alscale.queues.labelstudio.client import ProjectClient
from alscale.queues.labelstudio.tasks import ID_FIELD, annotation_record, chunks, id_filter, is_answered, of_pool, task_pool

__all__ = ["LabelStudioConnector"]

logger = logging.getLogger("alscale.queues")


class LabelStudioConnector(ProjectClient):
    """A Label Studio project as a labeling queue: push a batch as tasks, pull the answers into a workspace.

    Parameters
    ----------
    url : str
        Base URL of Label Studio, e.g. ``http://127.0.0.1:8080``.
    project : int
        Project id.
    token_env : str, default "LABEL_STUDIO_API_KEY"
        Environment variable holding the API token (a legacy token, sent as ``Token ...``, or a
        personal access token, exchanged for a short-lived access token, exchanged again whenever
        the server refuses an expired one).  The token is never written to disk or logs.
    data_columns : list of str or dict, optional
        Pool columns copied into each task's ``data`` (``"text"`` or ``"key=column"``).
    from_name : str, optional
        The ``<Choices>`` control to use when the label config has several.
    chunk_size : int, default 1000
        Tasks per import request.
    lookup_chunk : int, default 500
        Ids per duplicate-lookup request.
    page_size : int, default 1000
        Tasks per page when listing.
    timeout : float, default 120
        Seconds per request.
    retries, backoff : int, float
        Retries (exponential backoff from ``backoff`` seconds) on connection errors and 5xx.
    transport : httpx.BaseTransport, optional
        Transport seam for tests or proxies.
    """

    # ------------------------------------------------------------------ workspace
    def adopt_unqualified_name(self, ws: Any) -> dict[str, int]:
        """Give this connector's name to what ``ws`` keeps under ``label-studio:N``, the project's name before names carried the server.

        A workspace written then holds label records, pending ids and sent batches under the
        bare name.  The first connector to project N that meets it after it was reached (a push,
        a pull, a reconcile) takes them over in one atomic commit
        (:meth:`alscale.loop.workspace.Workspace.rename_queue`) and logs one warning saying so;
        the bare name is gone then, and this changes nothing again.  A workspace that used
        project N on two servers mixed their entries under the bare name already, and nothing
        tells them apart: they are all attributed to the first server seen.

        Parameters
        ----------
        ws : Workspace

        Returns
        -------
        dict
            ``{"labels", "pending", "sent"}``: how many label records, pending rows and sent
            batches were renamed.
        """
        old = f"label-studio:{self.project}"
        moved = ws.rename_queue(old, self.name)
        if any(moved.values()):
            logger.warning("workspace %s: %d label record(s), %d pending id(s) and %d sent batch(es) kept as %s (queue names "
                           "carried no server then) are now %s's, this connector's server", str(ws.path), moved["labels"],
                           moved["pending"], moved["sent"], old, self.name)
        return moved

    # ------------------------------------------------------------------ pull
    def pull(self, *, workspace: Any = None, pool: str | None = None) -> list[dict]:
        """Every annotation on alscale tasks as a label record; recorded in ``workspace`` when given.

        Parameters
        ----------
        workspace : str, path or Workspace, optional
            Where the labels are recorded: only answers on tasks of its pool, for ids it sent here.
        pool : str, optional
            Keep only tasks of this pool key (and tasks without one); the workspace's key by
            default, every task without a workspace.

        Returns
        -------
        list of dict
            ``{"id", "label", "status", "source", "annotation_id", "annotator", "answered_at", "pool", "batch_run_id"}``,
            one per annotation (``pool``: the task's pool key, None for a task pushed without one;
            ``batch_run_id``: the run id of the batch that made the task).
        """
        ws = open_workspace(workspace)
        if pool is None and ws is not None:
            pool = ws.pool_key
        from_name, _, _ = self.choices_control()
        if ws is not None:  # once the server answered: a mistyped URL does not take the workspace's entries
            self.adopt_unqualified_name(ws)
        filters = {"conjunction": "or", "items": [
            {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0},
            {"filter": "filter:tasks:cancelled_annotations", "operator": "greater", "type": "Number", "value": 0}]}
        records, malformed, other_pool, seen = [], [], 0, set()
        for task in self._tasks(filters, fields="all"):
            if not of_pool(task, pool):
                other_pool += 1
                continue
            for annotation in task.get("annotations") or []:
                seen.add(str(annotation.get("id")) if isinstance(annotation, Mapping) else None)
                try:
                    rec = annotation_record(annotation, task, source=self.name, from_name=from_name)
                except QueueError as exc:
                    malformed.append(f"task {task.get('id')}: {exc}")
                    continue
                if rec is not None:
                    records.append(rec)
        if other_pool:
            logger.warning("left out %d answered task(s) of other pools in %s (this pool's key is %s)", other_pool, self.name, pool)
        if malformed:
            logger.warning("left out %d annotation(s) of an unexpected shape, e.g. %s", len(malformed), malformed[0])
        if ws is not None:
            self._warn_of_deleted(ws, pool, seen)
        if ws is not None and records:
            answered = len(records)
            records = sent_here(ws, self.name, records)
            if len(records) < answered:
                self._hint_at_other_urls(ws)
            # one annotation the workspace cannot take (a choice added later) must not keep every other label out
            refused = ws.refused_labels(records)
            ws.record_labels(records, skip_invalid=True)
            records = [r for i, r in enumerate(records) if i not in refused]  # what was recorded, so counts agree
        return records

    def _hint_at_other_urls(self, ws: Any) -> None:
        """Where answers were left out as not sent here, name the other servers this workspace sent project N's batches to.

        A server reached by two URLs (a proxy, an internal and a public name) is two queues to a
        workspace: what was pushed by one URL is not taken by a pull through the other.
        """
        prefix = f"label-studio:{self.project}@"
        others = sorted(q for q in ws.queue_names() if q.startswith(prefix) and q != self.name)
        if others:
            logger.warning("workspace %s sent batches to project %d of %s; if that is this server under another URL, pull "
                           "through that URL (queue names carry the server's URL)", str(ws.path), self.project,
                           ", ".join(q[len(prefix):] for q in others))

    def _warn_of_deleted(self, ws: Any, pool: str | None, annotations: set) -> None:
        """Warn of what was deleted in the project: labels whose annotation is gone, pending ids whose task is gone.

        Neither is changed in the workspace: a label stays a label, a pending id stays pending.
        """
        labeled = [r for r in ws.labeled().to_pylist() if r["source"] == self.name and r["status"] == "labeled"]
        gone = [r for r in labeled if r["annotation_id"] not in annotations]
        if gone:
            logger.warning("%d label(s) taken from %s are of annotations no longer in the project (deleted there), e.g. id %r "
                           "(annotation %s); they stay labels in the workspace", len(gone), self.name, gone[0]["id"],
                           gone[0]["annotation_id"])
        table = ws.pending()
        waiting = [i for i, q in zip(table.column("id").to_pylist(), table.column("queue").to_pylist()) if q == self.name]
        if waiting:
            found = self.find_existing(waiting, pool=pool)
            missing = [i for i in waiting if i not in found]
            if missing:
                logger.warning("%d id(s) pending in %s have no task in the project any more (deleted there), e.g. id %r; "
                               "they stay pending: push their batch again to send them", len(missing), self.name, missing[0])

    # ------------------------------------------------------------------ push
    def build_task(self, row: Mapping[str, Any], batch: BatchView, from_name: str, to_name: str, pool: str | None = None) -> dict:
        """The Label Studio task JSON for one batch row (:func:`alscale.queues.labelstudio.tasks.build_task`)."""
        return _tasks.build_task(row, batch, from_name, to_name, pool)

    @one_push_at_a_time
    def push(self, manifest: Any, ws: Any) -> PushResult:
        """Import a batch's missing tasks; record every id that is in the project as pending.

        Parameters
        ----------
        manifest : str, path or Manifest
        workspace : str, path or Workspace, optional

        Returns
        -------
        PushResult

        Raises
        ------
        QueueAuthError, QueueUnavailableError, QueueError
            Wrong token, server unreachable, unknown project, label config not matching the model
            classes (the workspace's classes for a batch without model classes, such as the seed
            set of round 000).  On a failure half-way the chunks imported before it are already
            pending.
        """
        start = time.perf_counter()
        batch = load_batch_for(ws, manifest, self.data_columns)
        pool = ws.pool_key if ws is not None else batch.pool_key
        # a seed batch (round 000) has no model classes: the workspace's are what its answers must be
        use_workspace = not batch.classes and ws is not None and bool(ws.classes)
        from_name, to_name = self.check_classes([str(c) for c in ws.classes] if use_workspace else batch.classes,
                                                whose="workspace" if use_workspace else "model",
                                                no_class_list=ws is not None and not ws.classes)
        if ws is not None:  # before any task is sent: answers to this batch's tasks are taken even if the push dies
            self.adopt_unqualified_name(ws)
            ws.add_sent(self.name, batch.run_id)
        groups = self._task_groups(batch.ids, pool=pool)
        removed = self._remove_duplicates(groups, pool)  # left by pushes that raced before: the lowest task id stays
        existing = {value: tasks[0]["id"] for value, tasks in groups.items()}
        if ws is not None and existing:
            answered = set(ws.answered_ids().tolist())  # labeled, skipped or submitted empty: Label Studio serves them no more
            self._record(ws, [i for i in batch.ids if i in existing and i not in answered], batch.run_id)
        missing = [r for r in batch.rows if r["id"] not in existing]
        pushed: list = []
        for chunk in chunks(missing, self.chunk_size):
            try:
                self._import_chunk([self.build_task(r, batch, from_name, to_name, pool) for r in chunk])
            except KeyboardInterrupt:
                if ws is not None:
                    logger.warning(
                        "push interrupted: of batch %s's %d tasks, %d are in %s and recorded as pending (%d imported by this "
                        "push, %d there already); the chunk of %d in flight may have reached it too, and answers to it are "
                        "taken all the same. Push again to complete the batch (tasks already there are not imported twice).",
                        batch.run_id, len(batch.rows), len(pushed) + len(existing), self.name, len(pushed), len(existing), len(chunk))
                raise
            except QueueError as exc:
                note = (f" Of the batch's {len(batch.rows)} tasks, this push imported {len(pushed)} before this failure "
                        f"and {len(existing)} were in the project already")
                note += "; both are recorded as pending; push again to import the rest." if ws is not None else "."
                raise type(exc)(f"{exc}{note}") from None
            ids = [r["id"] for r in chunk]
            self._record(ws, ids, batch.run_id)
            pushed.extend(ids)
            removed += self._settle_chunk(ids, pool)
        seconds = time.perf_counter() - start
        logger.info("pushed %d tasks to %s (%d already there; %d duplicate task(s) of another push removed) in %.2fs", len(pushed),
                    self.name, len(existing), removed, seconds)
        return PushResult(queue=self.name, run_id=batch.run_id, pushed=tuple(pushed),
                          existing=tuple(i for i in batch.ids if i in existing), seconds=seconds,
                          details={"duplicates_removed": removed})

    def _settle_chunk(self, ids: list, pool: str | None) -> int:
        """After a chunk's import, remove the duplicates of its tasks that another push imported at the same time; returns how many.

        Label Studio does not deduplicate, and two pushes of one batch (two workspaces over one
        pool, two machines) that both look the ids up before either imports them both import
        them.  So the chunk's ids are counted again, one request per ``lookup_chunk`` ids; only
        where the project holds more tasks than ids are they listed, and each id with several
        tasks of this pool keeps the one with the lowest task id (:meth:`_remove_duplicates`).
        Whichever push imports last sees both imports, and both pushes keep the same task, so
        racing pushes end with one task per id, each id pending in both workspaces.  A check that
        fails is a warning, not a failure: the chunk is in the project and pending, and the other
        push, or the next push of the batch, removes what is left.
        """
        try:
            crowded = [i for chunk in chunks(ids, self.lookup_chunk) if self._count(id_filter(chunk)) != len(chunk) for i in chunk]
            return self._remove_duplicates(self._task_groups(crowded, pool=pool), pool) if crowded else 0
        except QueueError as exc:
            logger.warning("could not check the %d task(s) just imported into %s for copies another push imported at the same "
                           "time: %s", len(ids), self.name, exc)
            return 0

    def _remove_duplicates(self, groups: Mapping, pool: str | None) -> int:
        """Remove the extra tasks of ids the project holds several tasks of for pool ``pool``; returns how many went.

        Of an id's tasks that carry ``pool`` (a task without a key, pushed before tasks carried
        one, is never taken for a copy), the one with the lowest task id stays, and every other
        one without an annotation or skip goes.  An answered task never goes: where one stays
        beside the kept one, a warning names the id, and the answers of each are taken.

        Parameters
        ----------
        groups : dict
            :meth:`_task_groups`: {alscale id: its tasks, lowest task id first}.
        pool : str or None
        """
        extra, crowded = [], []
        for value, tasks in groups.items():
            mine = [t for t in tasks if task_pool(t) == pool]
            extra += [t["id"] for t in mine[1:] if not is_answered(t)]
            if any(is_answered(t) for t in mine[1:]):
                crowded.append((value, [t["id"] for t in mine if t is mine[0] or is_answered(t)]))
        if crowded:
            logger.warning("%d id(s) keep several tasks in %s, answered in more than one, e.g. id %r (tasks %s): an answered "
                           "task is never removed, and the answers of each are taken", len(crowded), self.name, crowded[0][0],
                           ", ".join(map(str, crowded[0][1])))
        if not extra:
            return 0
        try:
            return self._delete_unanswered(extra)
        except QueueError as exc:
            logger.warning("could not remove %d duplicate task(s) from %s: %s; they stay, and the answers of each are taken",
                           len(extra), self.name, exc)
            return 0

    def _record(self, ws, ids: list, run_id: str) -> None:
        if ws is not None and ids:
            ws.add_pending(ids, batch_run_id=run_id, queue=self.name)

    def _import_chunk(self, tasks: list[dict]) -> None:
        """Import tasks, retrying only where a retry cannot make a second copy of a task.

        A request that never reached the server (no connection; HTTP 429, 502, 503) is sent again
        after the ids are looked up.  One that may have reached it (no answer in time, a dropped
        connection, HTTP 500 or 504) may still be importing: the ids are looked up until they
        appear or :meth:`_settle_seconds` pass, and what never appeared is not sent again here.
        """
        client = self._http()
        what = f"Importing {len(tasks)} tasks into Label Studio project {self.project} ({self.url})"
        delays = backoff_delays(self.retries, self.backoff)
        last = "no answer"
        for attempt in range(len(delays) + 1):
            if attempt:
                time.sleep(delays[attempt - 1])
                try:
                    tasks = self._still_missing(tasks)
                except QueueUnavailableError as exc:
                    last = str(exc)
                    continue
                if not tasks:
                    return
            try:
                response = client.post(f"/api/projects/{self.project}/import", json=tasks)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # the request never left
                last = describe_failure(exc, self._secrets)
                continue
            except httpx.TransportError as exc:
                self._await_import(tasks, what, describe_failure(exc, self._secrets))
                return
            if response.status_code in NOT_PROCESSED_STATUS:  # nothing was imported
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 500:
                self._await_import(tasks, what, f"HTTP {response.status_code}")
                return
            check_response(response, what=what, secrets=self._secrets)
            return
        raise QueueUnavailableError(redact(f"{what} failed after {len(delays) + 1} attempts; last error: {last}.", self._secrets))

    def _still_missing(self, tasks: list[dict]) -> list[dict]:
        """The tasks (of one push, so of one pool) that the project does not hold yet."""
        there = self.find_existing([t["data"][ID_FIELD] for t in tasks], pool=task_pool(tasks[0]) if tasks else None)
        return [t for t in tasks if t["data"][ID_FIELD] not in there]

    def _settle_seconds(self) -> float:
        """How long an import whose answer was lost is waited for: the request timeout, 5 s at least."""
        return max(self.timeout, 5.0)

    def _await_import(self, tasks: list[dict], what: str, failure: str) -> None:
        """Wait for an import whose answer was lost to show its tasks; QueueUnavailableError if they do not."""
        deadline = time.monotonic() + self._settle_seconds()
        while True:
            time.sleep(max(self.backoff, 0.2))
            try:
                if not self._still_missing(tasks):
                    return
            except QueueUnavailableError as exc:  # the server is gone: whatever it imported is found next time
                raise QueueUnavailableError(redact(
                    f"{what} got no answer ({failure}), and checking what it imported failed: {exc} "
                    "Push again once the server is back (tasks already in the project are not imported twice).",
                    self._secrets)) from None
            if time.monotonic() > deadline:
                raise QueueUnavailableError(redact(
                    f"{what} got no answer ({failure}) and its tasks did not appear within {self._settle_seconds():g} s. "
                    "The import may still be running, so it is not sent again; push again later "
                    "(tasks already in the project are found and not imported twice).", self._secrets))

