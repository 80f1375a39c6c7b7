"""The label log's records: their schema, their key, their order in time, and disagreements.

The workspace keeps every answer a queue or a file gave as one record (a row of
``state/labels-<n>.parquet``), keyed on ``(source, annotation_id)``, or ``(source, id,
annotator)`` where there is no annotation id (a label file); ids sent and not answered yet are rows of the pending table.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from alscale.exceptions import LabelError, short_repr
from alscale.records import STATUSES  # the workspace keeps the queues' records as they are

__all__ = ["STATUSES", "answer_order", "describe_answers", "disagreeing", "id_arrow_type", "is_older", "labels_schema", "normalized_records", "pending_schema",
           "record_key", "renamed_pending", "renamed_records", "warn_of_disagreements", "warn_of_new_classes"]

logger = logging.getLogger("alscale.loop.workspace")  # its warnings are the workspace's


def id_arrow_type(kind: str) -> pa.DataType:
    """The Arrow type of a workspace's ids: ``kind`` is its ``id_type``, "int64" or "string"."""
    return pa.int64() if kind == "int64" else pa.string()


def labels_schema(kind: str) -> pa.Schema:
    """The label log's columns, ``kind`` the id type; ``seq`` orders the records as they were kept."""
    return pa.schema([
        ("id", id_arrow_type(kind)), ("label", pa.string()), ("status", pa.string()), ("source", pa.string()),
        ("annotation_id", pa.string()), ("annotator", pa.string()), ("labeled_at", pa.string()), ("seq", pa.int64()),
        ("answered_at", pa.string()),  # the queue's own time of the answer (Label Studio's updated_at), if it gave one
    ])


def _answer_time(value) -> _dt.datetime | None:
    """A queue's timestamp as an aware datetime (naive ones are taken as UTC); None if absent or unreadable."""
    if value is None:
        return None
    try:
        when = value if isinstance(value, _dt.datetime) else _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.timezone.utc)


_EPOCH = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)


def answer_order(r: dict) -> tuple:
    """The sort key that puts one id's answers in the order they were given: latest last.

    The queue's own time of the answer (``answered_at``: Label Studio's ``updated_at``) where it
    gave one, else the time the workspace kept the record (``labeled_at``: a label file's rows,
    which is no earlier than their answer); ``seq`` (the order records were kept) breaks ties.
    So an answer edited last is the latest even when an older one reached the workspace after it.
    """
    when = _answer_time(r.get("answered_at")) or _answer_time(r.get("labeled_at")) or _EPOCH
    return when, r.get("seq") or 0


def is_older(new: dict, old: dict) -> bool:
    """Whether record ``new`` answers before ``old`` by the queue's own clock (a late or replayed webhook)."""
    new_time, old_time = _answer_time(new.get("answered_at")), _answer_time(old.get("answered_at"))
    return new_time is not None and old_time is not None and new_time < old_time


def pending_schema(kind: str) -> pa.Schema:
    """The pending table's columns: one row per id and queue it was sent to."""
    return pa.schema([("id", id_arrow_type(kind)), ("batch_run_id", pa.string()), ("queue", pa.string()), ("sent_at", pa.string())])


def record_key(r: dict) -> tuple:
    """The key a record is kept under: ``(source, annotation_id)``, or without an annotation id (a label file)
    ``(source, "id", id, annotator)``: two annotators' answers on one id are two records, each kept."""
    if r["annotation_id"] is not None:
        return r["source"], r["annotation_id"]
    return r["source"], "id", r["id"], r["annotator"]


def renamed_records(log: list[dict], old: str, new: str) -> list[dict]:
    """Label-log rows with the source ``old`` named ``new``, in ``seq`` order.

    Where a renamed row's key (:func:`record_key`) is one a row under ``new`` holds already,
    the later answer (:func:`answer_order`) is kept, as :meth:`Workspace.record_labels` keeps
    the newer version of one annotation.
    """
    kept: dict = {}
    for r in sorted(log, key=answer_order):  # oldest answer first: a later one under the same key replaces it
        r = {**r, "source": new} if r["source"] == old else r
        kept[record_key(r)] = r
    return sorted(kept.values(), key=lambda r: r["seq"])


def renamed_pending(rows: list[dict], old: str, new: str) -> list[dict]:
    """Pending rows with the queue ``old`` named ``new``; an id pending in both is one row, the first."""
    out, seen = [], set()
    for r in rows:
        r = {**r, "queue": new} if r["queue"] == old else r
        if (r["id"], r["queue"]) not in seen:
            seen.add((r["id"], r["queue"]))
            out.append(r)
    return out


def disagreeing(log: list[dict], ids: set | None = None) -> list[dict]:
    """The disagreements among label-log rows (``ids``: only these ids); each id's answers in :func:`answer_order`."""
    by_id: dict = {}
    for r in log:
        if r["status"] == "labeled" and (ids is None or r["id"] in ids):
            by_id.setdefault(r["id"], []).append(r)
    out = []
    for ident in sorted(by_id, key=lambda v: (isinstance(v, str), v)):
        answers = sorted(by_id[ident], key=answer_order)
        if len({r["label"] for r in answers}) > 1:
            out.append({"id": ident, "labels": [(r["label"], r["annotator"], r["source"]) for r in answers],
                        "used": answers[-1]["label"]})
    return out


def describe_answers(disagreement: dict) -> str:
    """One of :meth:`Workspace.disagreements` as text: ``'cat' (ann), 'dog' (bob)`` (the source where no annotator is known)."""
    return ", ".join(f"{label!r} ({annotator or source})" for label, annotator, source in disagreement["labels"])


def warn_of_disagreements(found: list[dict]) -> None:
    """Log one warning for :func:`disagreeing`'s list, naming the first and counting them (nothing if empty)."""
    if not found:
        return
    first = found[0]
    logger.warning("%d id(s) have answers that disagree, e.g. id %r: %s; the latest (%r) is used "
                   "(`alscale status` lists them)", len(found), first["id"], describe_answers(first), first["used"])


def _checked_label(label, known: set[str] | None, classes: Sequence | None) -> str | None:
    """``label`` as the workspace keeps it (a str, or None); LabelError outside ``known``."""
    if label is None:
        return None
    text = str(label.item() if isinstance(label, np.generic) else label)
    if known is not None and text not in known:
        raise LabelError(f"Expected a label among the known classes {classes}. Got {label!r}.")
    return text


def normalized_records(records: Iterable[dict], classes: Sequence | None) -> tuple[list[dict], list[tuple[int, str]]]:
    """Label records as the log keeps them, and ``(row index, reason)`` of each one that cannot be kept.

    Checks each record's status and label (among ``classes``, where not None); ids are left as
    they came (the workspace converts them to its id type and checks them against the pool).

    Parameters
    ----------
    records : iterable of dict, or pyarrow.Table
        As :meth:`alscale.loop.workspace.Workspace.record_labels` takes them.
    classes : sequence or None
        The workspace's classes; None takes any label.

    Returns
    -------
    rows : list of dict
        ``{"id", "label", "status", "source", "annotation_id", "annotator", "answered_at"}``, one per record.
    problems : list of (int, str)

    Raises
    ------
    LabelError
        ``records`` is not a list of dicts (or a table), or a record has no ``id``.
    """
    known = None if classes is None else {str(c) for c in classes}
    if isinstance(records, pa.Table):
        records = records.to_pylist()
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise LabelError(f"Expected label records as a list of dicts or a pyarrow Table. Got {short_repr(records)} instead.")
    rows, problems = [], []
    for rec in records:
        if not isinstance(rec, dict) or "id" not in rec:
            raise LabelError(f"Expected each label record to be a dict with an 'id'. Got {short_repr(rec)}.")
        status = rec.get("status") or "labeled"
        ann = rec.get("annotation_id")
        try:
            if status not in STATUSES:
                raise LabelError(f"Expected a status among {list(STATUSES)}. Got {status!r}.")
            label = _checked_label(rec.get("label"), known, classes)
            if status == "labeled" and label is None:
                raise LabelError(f"Expected a label for id {rec['id']!r} with status 'labeled'. Got None.")
        except LabelError as exc:
            problems.append((len(rows), str(exc)))
            label = None
        answered = rec.get("answered_at")
        rows.append({"id": rec["id"], "label": label if status == "labeled" else None, "status": status,
                     "source": str(rec.get("source") or "unknown"), "annotation_id": None if ann is None else str(ann),
                     "annotator": None if rec.get("annotator") is None else str(rec["annotator"]),
                     "answered_at": None if answered is None else str(answered)})
    return rows, problems


def warn_of_new_classes(rows: list[dict], kept: Iterable[dict]) -> None:
    """With no class list every label is taken: say so when one no kept record holds comes in (a typo?)."""
    have = {r["label"] for r in kept if r["status"] == "labeled" and r["label"] is not None}
    new = sorted({r["label"] for r in rows if r["label"] is not None} - have)
    if have and new:
        logger.warning("new class(es) %s, not in the labeled set so far (%s); a workspace created with --classes "
                       "refuses labels outside its classes", new, sorted(have))
