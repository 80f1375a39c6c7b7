"""What alscale puts into a Label Studio task and reads back out of it: field names, queue names, records.

Pure functions on task and annotation JSON; nothing here talks to a server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from alscale.exceptions import QueueError
from alscale.queues.base import BatchView

__all__ = ["ID_FIELD", "POOL_FIELD", "RUN_FIELD", "annotation_record", "build_task", "of_pool", "prediction_score", "queue_name",
           "server_of", "task_pool"]

ID_FIELD = "alscale_id"
RUN_FIELD = "alscale_run"
POOL_FIELD = "alscale_pool"
LOOKUP_FIELDS = "id,data,meta,total_annotations,cancelled_annotations"  # what a look-up reads of a task
UNANSWERED = [  # Data Manager filter items: tasks with no annotation and no skip
    {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
    {"filter": "filter:tasks:cancelled_annotations", "operator": "equal", "type": "Number", "value": 0}]


_DEFAULT_PORTS = {"http": 80, "https": 443}


def server_of(url: str) -> str:
    """The Label Studio server ``url`` names, as its queue names carry it: scheme, lower-case host, port, path.

    The port is left out where it is the scheme's default and the path loses its trailing
    slashes, so ``HTTP://LS.example.org:80/ls/`` and ``http://ls.example.org/ls`` are one server.
    A user name, password, query or fragment is never part of it: it is written into workspaces.
    """
    parsed = httpx.URL(url)
    scheme, host = parsed.scheme.lower(), parsed.host.lower()
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    port = "" if parsed.port in (None, _DEFAULT_PORTS.get(scheme)) else f":{parsed.port}"
    path = parsed.raw_path.split(b"?", 1)[0].decode("ascii").rstrip("/")
    return f"{scheme}://{host}{port}{path}"


def queue_name(project: int, url: str) -> str:
    """The queue name of Label Studio project ``project`` on the server at ``url``: ``label-studio:3@http://127.0.0.1:8080``.

    A workspace keeps labels under (queue name, annotation id), pending ids and sent batches
    under the queue name.  Two servers number their projects and annotations alike (each one's
    first project is 1), so the name carries the server (:func:`server_of`) as well as the project.
    """
    return f"label-studio:{int(project)}@{server_of(url)}"


def task_pool(task: Mapping[str, Any]) -> str | None:
    """The pool key a task was pushed with (None: a task pushed before tasks carried one)."""
    data, meta = task.get("data"), task.get("meta")
    for holder in (data, meta):
        if isinstance(holder, Mapping) and isinstance(holder.get(POOL_FIELD), str):
            return holder[POOL_FIELD]
    return None


def of_pool(task: Mapping[str, Any], key: str | None) -> bool:
    """Whether ``task`` may be the pool ``key``'s: its key is ``key``, or it has none, or ``key`` is None."""
    tagged = task_pool(task)
    return key is None or tagged is None or tagged == key


def prediction_score(rank: int, k: int) -> float:
    """Label Studio prediction score for a batch row: 0.0 for rank 1, 1.0 for rank k.

    Label Studio's "uncertainty sampling" serves the lowest score first, so annotators see the
    most informative example (rank 1) first.

    Parameters
    ----------
    rank : int
        The row's rank in the batch, 1-based.
    k : int
        Rows in the batch.

    Returns
    -------
    float
        ``(rank - 1) / (k - 1)``, in [0, 1]; 0.0 when ``k <= 1``.
    """
    return 0.0 if k <= 1 else (int(rank) - 1) / (int(k) - 1)


def id_filter(ids: Sequence) -> dict:
    """The Data Manager filter for the tasks whose ``data.alscale_id`` is one of ``ids``."""
    return {"conjunction": "and", "items": [
        {"filter": f"filter:tasks:data.{ID_FIELD}", "operator": "in_list", "type": "String", "value": list(ids)}]}


def is_answered(task: Mapping[str, Any]) -> bool:
    """Whether a listed task has an annotation or a skip; one whose counts are not given is taken for answered."""
    return not (task.get("total_annotations") == 0 and task.get("cancelled_annotations") == 0)


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def annotation_record(annotation: Mapping[str, Any], task: Mapping[str, Any], *, source: str, from_name: str | None = None) -> dict | None:
    """Turn one Label Studio annotation into a workspace label record (None: not an alscale task).

    A cancelled annotation (``was_cancelled``, Label Studio's "Skip") becomes status "skipped";
    an annotation without any choice for the classification control becomes "cancelled"; both
    carry no label.

    Raises
    ------
    QueueError
        The annotation or task does not have Label Studio's shape (e.g. a malformed webhook).
    """
    data, meta = task.get("data") or {}, task.get("meta") or {}
    if not isinstance(data, Mapping) or not isinstance(meta, Mapping):
        raise QueueError(f"Expected a task whose 'data' and 'meta' are objects. Got {type(data).__name__} and {type(meta).__name__}.")
    alscale_id = meta.get(ID_FIELD, data.get(ID_FIELD))
    if alscale_id is None:
        return None
    if isinstance(alscale_id, (Mapping, list, bool, float)):
        raise QueueError(f"Expected an int or string {ID_FIELD}. Got {alscale_id!r}.")
    annotation_id = annotation.get("id")
    if isinstance(annotation_id, bool) or not isinstance(annotation_id, (int, str)) or annotation_id == "":
        # labels are keyed on (source, annotation id): a missing one would make every such answer replace the last
        raise QueueError(f"Expected an annotation whose 'id' is an int or a non-empty string. Got {annotation_id!r:.80}.")
    label = None
    if annotation.get("was_cancelled"):
        status = "skipped"
    else:
        results = annotation.get("result") or []
        if not isinstance(results, list) or not all(isinstance(item, Mapping) for item in results):
            raise QueueError(f"Expected an annotation 'result' that is a list of objects. Got {results!r:.80}.")
        for item in results:
            if item.get("type") != "choices" or (from_name and item.get("from_name") != from_name):
                continue
            choices = (item.get("value") or {}).get("choices") if isinstance(item.get("value"), Mapping) else None
            if choices is not None and not isinstance(choices, list):
                raise QueueError(f"Expected the 'choices' of an annotation to be a list. Got {choices!r:.80}.")
            if choices and len(choices) > 1:  # a control with choice="multiple": alscale labels are one class each
                raise QueueError(f"Expected one choice per answer (alscale's labels are one class each). Got {len(choices)}: "
                                 f"{choices!r:.80}; make the project's <Choices> single-choice.")
            if choices:
                label = str(choices[0])
                break
        status = "labeled" if label is not None else "cancelled"
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        who = who.get("email") or who.get("id")
    answered = annotation.get("updated_at") or annotation.get("created_at")
    run = meta.get(RUN_FIELD, data.get(RUN_FIELD))
    return {
        "id": alscale_id, "label": label, "status": status, "source": source,
        "annotation_id": str(annotation_id), "annotator": None if who is None else str(who),
        "answered_at": answered if isinstance(answered, str) else None, "pool": task_pool(task),
        "batch_run_id": run if isinstance(run, str) else None,
    }


def build_task(row: Mapping[str, Any], batch: BatchView, from_name: str, to_name: str, pool: str | None = None) -> dict:
    """The Label Studio task JSON for one batch row (``pool``: the pool key it carries)."""
    k = len(batch.rows)
    ident = {ID_FIELD: row["id"], RUN_FIELD: batch.run_id, **({POOL_FIELD: pool} if pool is not None else {})}
    meta = {**ident, "alscale_rank": row["rank"], "alscale_score": row["score"],
            "alscale_confidence": row["confidence"], "alscale_strategy": row["strategy"]}
    task = {"data": {**row["data"], **ident}, "meta": meta}
    if row["predicted_class"] is not None:
        model = batch.manifest.get("model") or {}
        sha = model.get("sha256")
        version = f"alscale-{(sha[0] if isinstance(sha, list) else sha or batch.run_id)[:12]}"
        task["predictions"] = [{
            "model_version": version, "score": prediction_score(row["rank"], k),
            "result": [{"from_name": from_name, "to_name": to_name, "type": "choices",
                        "value": {"choices": [row["predicted_class"]]}}],
        }]
    return task
