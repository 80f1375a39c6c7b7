"""Label Studio over its REST API: push a batch as tasks, pull annotations, register a webhook.

Tasks
-----
Each selected example becomes one task::

    {"data": {<named pool columns>, "alscale_id": id, "alscale_run": run_id, "alscale_pool": key},
     "meta": {"alscale_id", "alscale_run", "alscale_pool", "alscale_rank", "alscale_score",
              "alscale_confidence", "alscale_strategy"},
     "predictions": [{"model_version": ..., "score": s,
                      "result": [{"from_name", "to_name", "type": "choices",
                                  "value": {"choices": [predicted_class]}}]}]}

``alscale_pool`` is the pool's key (:func:`alscale.pool.identity.pool_key`: the workspace's, or
the one of the manifest's pool without a workspace).  Ids are unique within a pool, not across
pools, so a project shared by pools whose ids overlap tells their tasks apart by the id and the
key together.  The id sits in ``data`` too because Label Studio's Data Manager filters on
``data`` fields, not on ``meta``.  The prediction ``score`` is ``s = (rank - 1) / (k - 1)``: 0
for the most informative example and 1 for the least.  Label Studio's "uncertainty sampling"
serves the lowest prediction score first, so annotators see the batch in alscale's order
whatever the strategy (the model's confidence is kept in ``meta.alscale_confidence``).

No duplicates
-------------
Label Studio does not deduplicate imports.  Before importing, :meth:`push` asks which alscale
ids the project already holds for this pool (a Data Manager ``in_list`` filter on
``data.alscale_id``, ``lookup_chunk`` ids per request, paginated; then the pool key is
compared) and imports only the missing ones, ``chunk_size`` tasks per request.  A task without
a pool key (pushed before tasks carried one) matches on its id alone, as it did then.  A chunk
whose request fails is never re-sent blindly: the ids are looked up again first, so a chunk the
server committed before the connection dropped is not imported twice.  Every chunk that was
imported (or found) is recorded as pending in the workspace right away.  Before anything is
sent, the workspace keeps the batch's run id as sent to the project (``Workspace.add_sent``):
a push killed while a chunk was in flight leaves that chunk in Label Studio but not pending,
and its answers are still taken, since its tasks carry the run id; pushing again records it
as pending and imports the rest.

The push lock (:func:`alscale.queues.base.one_push_at_a_time`) is one workspace's: pushes from
two workspaces over one pool, or from two machines, may both look the ids up before either
imports them, and both import them.  So after each chunk is imported its ids are counted again
(``lookup_chunk`` ids per request, one task's fields in the answer); where the project holds
more tasks than ids (or tasks of another pool with the same ids), they are listed, and each id
with several tasks of this pool keeps the one with the lowest task id: the others that have no
annotation (nor skip) are removed, the server checking that in the same request (a Data
Manager ``delete_tasks`` action).  Whichever push imports last sees both imports, and both keep
the same task, so the project ends with one task per id, pending in both workspaces.  An
answered task is never removed (an id answered in two tasks keeps both, with a warning).  The
look-up before the import removes the copies an earlier race left the same way.

Cost: O(k) rows read from the pool, ``ceil(k / lookup_chunk) + ceil(missing / chunk_size)
+ ceil(missing / lookup_chunk)`` requests where no other push raced this one (the last term the
counts after each chunk: about 0.2 s a chunk of 1,000 tasks, 13% of the push, on a 2-core
machine with Label Studio 1.23.2).

Names
-----
A workspace keeps what it sent to a project, and the answers it took from there, under the
queue's name, ``label-studio:<project>@<server>`` (:func:`queue_name`; the server is the
normalised base URL), and each answer under that name and its annotation id.  Two servers
number their projects and annotations alike, so the server is part of the name; a server
reached by two URLs is two queues.  Workspaces written when the name was ``label-studio:<project>``
are taken over by the first connector to that project that uses them
(:meth:`LabelStudioConnector.adopt_unqualified_name`).
"""

from __future__ import annotations

import json
import logging
import numbers
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from alscale.config import check_int
from alscale.exceptions import ConfigError, QueueError, QueueUnavailableError
from alscale.queues._http import (NOT_PROCESSED_STATUS, backoff_delays, check_number, check_response, check_url, describe_failure, redact,
                                  response_json, secret_from_env, send_with_retries)
from alscale.queues.base import BatchView, PushResult, load_batch_for, normalize_data_columns, one_push_at_a_time, open_workspace, sent_here

__all__ = ["DEFAULT_TOKEN_ENV", "WEBHOOK_ACTIONS", "LabelStudioConnector", "annotation_record", "of_pool", "prediction_score", "queue_name",
           "server_of", "task_pool"]

logger = logging.getLogger("alscale.queues")

DEFAULT_TOKEN_ENV = "LABEL_STUDIO_API_KEY"
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
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


def _id_filter(ids: Sequence) -> dict:
    """The Data Manager filter for the tasks whose ``data.alscale_id`` is one of ``ids``."""
    return {"conjunction": "and", "items": [
        {"filter": f"filter:tasks:data.{ID_FIELD}", "operator": "in_list", "type": "String", "value": list(ids)}]}


def _answered(task: Mapping[str, Any]) -> bool:
    """Whether a listed task has an annotation or a skip; one whose counts are not given is taken for answered."""
    return not (task.get("total_annotations") == 0 and task.get("cancelled_annotations") == 0)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
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


def _check_base_url(url: str) -> None:
    """ConfigError for a page or API address (``.../projects/2``, ``.../api/...``) given as the base URL."""
    parsed = httpx.URL(url)
    segments = [s for s in parsed.path.split("/") if s]
    at = next((i for i, s in enumerate(segments) if s in ("projects", "api")), None)
    if at is not None:
        base = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}" + "".join(f"/{s}" for s in segments[:at])
        raise ConfigError(f"Expected the Label Studio base URL (e.g. {base}). Got {url!r}, the address of a page or API "
                          f"endpoint ('/{segments[at]}/'); give the base URL and the project id separately.")


class _RefreshOn401(httpx.Auth):
    """On HTTP 401, exchange the personal access token for a new access token and send the request once more.

    Label Studio's access tokens live 5 minutes by default, so a long run (``alscale listen``, a
    large push) outlives several.  A 401 means the server did not act on the request, so sending
    it again (an import too) cannot make a second copy of anything.  Where the exchange fails
    (the token was revoked) its answer is the request's, and the caller reports it.
    """

    requires_response_body = True

    def __init__(self, connector: LabelStudioConnector, refresh: str):
        self._connector, self._refresh = connector, refresh

    def auth_flow(self, request: httpx.Request):
        response = yield request
        if response.status_code != 401:
            return
        answer = yield httpx.Request("POST", f"{self._connector.url}/api/token/refresh/", json={"refresh": self._refresh})
        try:
            access = answer.json().get("access") if answer.status_code == 200 else None
        except ValueError:
            access = None
        if not isinstance(access, str) or not access:
            return
        earlier = [s for s in self._connector._secrets[-1:] if s != self._refresh]  # the expired one may still be quoted
        self._connector._secrets = (self._refresh, *earlier, access)
        if self._connector._client is not None:
            self._connector._client.headers["Authorization"] = f"Bearer {access}"
        request.headers["Authorization"] = f"Bearer {access}"
        yield request


class LabelStudioConnector:
    """A Label Studio project as a labeling queue.

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

    def __init__(
        self,
        url: str,
        project: int,
        *,
        token_env: str = DEFAULT_TOKEN_ENV,
        data_columns: Sequence[str] | Mapping[str, str] | None = None,
        from_name: str | None = None,
        chunk_size: int = 1000,
        lookup_chunk: int = 500,
        page_size: int = 1000,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ):
        check_url(url, what="Label Studio 'url'")
        _check_base_url(url)
        if isinstance(project, bool) or not isinstance(project, numbers.Integral) or project < 1:
            raise ConfigError(f"The Label Studio 'project' must be an int >= 1. Got {project!r}.")
        project = int(project)  # numpy integers are accepted; requests carry a plain int
        chunk_size, lookup_chunk, page_size = (check_int(name, value, 1) for name, value in (
            ("chunk_size", chunk_size), ("lookup_chunk", lookup_chunk), ("page_size", page_size)))
        retries = check_int("retries", retries, 0)
        self.url = url.rstrip("/")
        self.project = project
        self.token_env = token_env
        self.data_columns = normalize_data_columns(data_columns)
        self.from_name = from_name
        self.chunk_size, self.lookup_chunk, self.page_size = chunk_size, lookup_chunk, page_size
        self.timeout, self.retries = check_number("timeout", timeout, minimum=0.001), retries
        self.backoff = check_number("backoff", backoff)
        self.name = queue_name(project, self.url)
        self._transport = transport
        self._client: httpx.Client | None = None
        self._secrets: tuple[str, ...] = ()

    # ------------------------------------------------------------------ plumbing
    def __enter__(self) -> LabelStudioConnector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:  # never shows the token
        return f"LabelStudioConnector(url={self.url!r}, project={self.project}, token_env={self.token_env!r})"

    def _http(self) -> httpx.Client:
        if self._client is None:
            token = secret_from_env(self.token_env, what="Label Studio API token")
            self._secrets = (token,)
            client = httpx.Client(base_url=self.url, timeout=self.timeout, transport=self._transport)
            scheme, credential = "Token", token
            if token.count(".") == 2 and token.startswith("eyJ"):  # a personal access token (JWT refresh)
                scheme, credential = "Bearer", self._access_token(client, token)
                self._secrets = (token, credential)
                client.auth = _RefreshOn401(self, token)  # access tokens expire (5 minutes by default); the PAT does not
            client.headers["Authorization"] = f"{scheme} {credential}"
            self._client = client
        return self._client

    def _access_token(self, client: httpx.Client, refresh: str) -> str:
        response = self._send(lambda: client.post("/api/token/refresh/", json={"refresh": refresh}), "Exchanging the Label Studio personal access token")
        access = response_json(response, what="Exchanging the Label Studio personal access token", secrets=self._secrets)
        if not isinstance(access, Mapping) or not access.get("access"):
            raise QueueError(f"Exchanging the Label Studio personal access token ({self.url}): expected an 'access' token in the answer. Got none.")
        return access["access"]

    def _send(self, send, what: str) -> httpx.Response:
        """A retried, checked request (only for requests safe to repeat)."""
        what = f"{what} ({self.url})"
        response = send_with_retries(send, what=what, retries=self.retries, backoff=self.backoff, secrets=self._secrets)
        return check_response(response, what=what, secrets=self._secrets)

    def _get(self, path: str, params: Mapping[str, Any] | None = None, *, what: str) -> Any:
        client = self._http()
        response = self._send(lambda: client.get(path, params=params), what)
        return response_json(response, what=f"{what} ({self.url})", secrets=self._secrets)

    # ------------------------------------------------------------------ project
    def project_info(self) -> dict:
        """The project's JSON; QueueError naming the project when it does not exist."""
        client = self._http()
        what = f"Reading Label Studio project {self.project} ({self.url})"
        response = send_with_retries(lambda: client.get(f"/api/projects/{self.project}/"), what=what,
                                     retries=self.retries, backoff=self.backoff, secrets=self._secrets)
        if response.status_code == 404:
            raise QueueError(f"Expected an existing Label Studio project id at {self.url}. Got project {self.project}, which does not exist (HTTP 404).")
        info = response_json(check_response(response, what=what, secrets=self._secrets), what=what, secrets=self._secrets)
        if not isinstance(info, Mapping):
            raise QueueError(f"{what}: expected a project object. Got {type(info).__name__}; is this a Label Studio server?")
        return info

    def choices_control(self, project: Mapping[str, Any] | None = None) -> tuple[str, str, list[str]]:
        """(from_name, to_name, choice values) of the project's ``<Choices>`` control."""
        project = self.project_info() if project is None else project
        try:
            root = ET.fromstring(project.get("label_config") or "")
        except ET.ParseError as exc:
            raise QueueError(f"Label Studio project {self.project} has a label config that is not valid XML: {exc}.") from None
        controls = [el for el in root.iter() if el.tag == "Choices"]
        if self.from_name is not None:
            controls = [el for el in controls if el.get("name") == self.from_name]
        if len(controls) != 1:
            names = [el.get("name") for el in root.iter() if el.tag == "Choices"]
            want = f"the <Choices name={self.from_name!r}>" if self.from_name else "exactly one <Choices> control"
            raise QueueError(f"Expected {want} in Label Studio project {self.project}'s label config. Got <Choices> controls {names}.")
        el = controls[0]
        values = [c.get("alias") or c.get("value") for c in el.iter() if c.tag == "Choice"]
        return el.get("name"), el.get("toName"), [str(v) for v in values if v is not None]

    def multiple_choice(self, project: Mapping[str, Any]) -> bool:
        """Whether the project's ``<Choices>`` control lets an annotator pick several values (``choice="multiple"``)."""
        name = self.choices_control(project)[0]
        root = ET.fromstring(project.get("label_config") or "")
        return any(el.tag == "Choices" and el.get("name") == name and (el.get("choice") or "").lower() == "multiple"
                   for el in root.iter())

    def data_keys(self, project: Mapping[str, Any]) -> set[str]:
        """The task data keys the label config reads (``value="$text"`` -> ``text``)."""
        try:
            root = ET.fromstring(project.get("label_config") or "")
        except ET.ParseError:
            return set()
        return {el.get("value")[1:] for el in root.iter() if (el.get("value") or "").startswith("$") and el.tag != "Choice"}

    def check_classes(self, classes: Sequence[str], project: Mapping[str, Any] | None = None, *, whose: str = "model",
                      no_class_list: bool = False) -> tuple[str, str]:
        """Check the project's choices are ``classes`` and its data keys are sent; returns (from_name, to_name).

        Parameters
        ----------
        classes : sequence of str
            The classes the choices must be (none: not checked).
        project : dict, optional
            The project's JSON (read when not given).
        whose : str, default "model"
            Whose classes they are, for the error message ("model", "workspace").
        no_class_list : bool, default False
            The model's workspace has no class list: its models know the classes labeled so far
            only, and a mismatch says how to get out of it.
        """
        project = self.project_info() if project is None else project
        needed = self.data_keys(project) - set(self.data_columns) - {ID_FIELD, RUN_FIELD, POOL_FIELD}
        if needed:
            raise QueueError(
                f"Label Studio project {self.project}'s label config reads {sorted('$' + k for k in needed)} from each task: "
                f"expected data_columns naming them (e.g. --data-column {sorted(needed)[0]}=COLUMN, COLUMN a pool column). "
                f"Got data_columns {sorted(self.data_columns)}."
            )
        from_name, to_name, choices = self.choices_control(project)
        if self.multiple_choice(project):
            raise QueueError(f"Label Studio project {self.project}'s <Choices name={from_name!r}> allows several answers "
                             "(choice=\"multiple\"); expected a single-choice control: alscale's labels are one class each.")
        if classes and set(choices) != {str(c) for c in classes}:
            missing = sorted({str(c) for c in classes} - set(choices))
            extra = sorted(set(choices) - {str(c) for c in classes})
            parts = ([f"missing {missing}"] if missing else []) + ([f"not in the {whose} {extra}"] if extra else [])
            way_out = ""
            if no_class_list and extra:
                every = sorted({*choices, *map(str, classes)})
                way_out = (f" The workspace has no class list (made without --classes), so its model knows only the classes "
                           f"labeled so far, and {extra} has none yet. Make the workspace with the classes "
                           f"(alscale init WS --pool ... --classes {','.join(every)}) and label into it, or take {extra} out of "
                           f"the project's choices until an example of each is labeled (by a label file, or a project "
                           f"that offers it).")
            raise QueueError(
                f"Label Studio project {self.project}'s choices {choices} do not match the {whose} classes "
                f"{list(classes)}: {'; '.join(parts)}.{way_out}"
            )
        return from_name, to_name

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

    # ------------------------------------------------------------------ listing
    def _task_query(self, filters: Mapping[str, Any] | None, *, fields: str | None = None, include: str | None = None) -> dict:
        """The query parameters of a task listing of the project (``include``: only these task fields, where the server can)."""
        params: dict[str, Any] = {"project": self.project}
        if fields:
            params["fields"] = fields
        if include:
            params["include"] = include
        if filters:
            # Label Studio percent-decodes the query once more after the URL decoding, so a literal
            # "%" must travel as "%25": an id such as "my%20photo.jpg" would not match itself
            params["query"] = json.dumps({"filters": filters}).replace("%", "%25")
        return params

    def _tasks(self, filters: Mapping[str, Any] | None, *, fields: str | None = None, include: str | None = None) -> Iterator[dict]:
        """Every task of the project matching Data Manager ``filters``, page by page."""
        params = {**self._task_query(filters, fields=fields, include=include), "page_size": self.page_size}
        seen, page = 0, 1
        while True:
            body = self._get("/api/tasks/", {**params, "page": page}, what=f"Listing tasks of Label Studio project {self.project}")
            tasks = body.get("tasks", []) if isinstance(body, Mapping) else body
            yield from tasks
            seen += len(tasks)
            total = body.get("total") if isinstance(body, Mapping) else None
            # a server may cap the page size (TASK_API_PAGE_SIZE_MAX): a short page ends the listing
            # only when the server gives no total to count against
            if not tasks or (seen >= total if total is not None else len(tasks) < self.page_size):
                return
            page += 1

    def _count(self, filters: Mapping[str, Any]) -> int | None:
        """How many tasks of the project match Data Manager ``filters``: one request for one task's id (None: no total given)."""
        body = self._get("/api/tasks/", {**self._task_query(filters, include="id"), "page": 1, "page_size": 1},
                         what=f"Counting tasks of Label Studio project {self.project}")
        total = body.get("total") if isinstance(body, Mapping) else None
        return total if isinstance(total, int) and not isinstance(total, bool) else None

    def _task_groups(self, ids: Sequence, *, pool: str | None = None) -> dict:
        """{alscale id: its tasks, lowest task id first} for the ids the project holds.

        Each task holds only :data:`LOOKUP_FIELDS` where the server can leave the others out.
        ``pool`` as in :meth:`find_existing`.
        """
        found: dict = {}
        for chunk in _chunks(list(ids), self.lookup_chunk):
            wanted = set(chunk)
            for task in self._tasks(_id_filter(chunk), include=LOOKUP_FIELDS):
                value = (task.get("data") or {}).get(ID_FIELD)
                if value in wanted and of_pool(task, pool):  # the filter narrows; this check makes the answer exact
                    found.setdefault(value, []).append(task)
        return {value: sorted(tasks, key=lambda t: t["id"]) for value, tasks in found.items()}

    def find_existing(self, ids: Sequence, *, pool: str | None = None) -> dict:
        """{alscale id: Label Studio task id} for the ids the project already holds (the lowest task id, where several).

        Parameters
        ----------
        ids : sequence
        pool : str, optional
            A pool key: tasks of another pool with the same id are not counted (tasks without a
            key are).  None counts every task with the id.
        """
        return {value: tasks[0]["id"] for value, tasks in self._task_groups(ids, pool=pool).items()}

    def pending(self, *, pool: str | None = None) -> list:
        """Alscale ids in the project without any annotation (nor skip), in task order.

        Parameters
        ----------
        pool : str, optional
            Only tasks of this pool key (and tasks without one); None: every pool's.
        """
        filters = {"conjunction": "and", "items": UNANSWERED}
        return [t["data"][ID_FIELD] for t in self._tasks(filters) if ID_FIELD in (t.get("data") or {}) and of_pool(t, pool)]

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
        for chunk in _chunks(missing, self.chunk_size):
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
            crowded = [i for chunk in _chunks(ids, self.lookup_chunk) if self._count(_id_filter(chunk)) != len(chunk) for i in chunk]
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
            extra += [t["id"] for t in mine[1:] if not _answered(t)]
            if any(_answered(t) for t in mine[1:]):
                crowded.append((value, [t["id"] for t in mine if t is mine[0] or _answered(t)]))
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

    def _delete_unanswered(self, task_ids: list) -> int:
        """Delete those of the tasks ``task_ids`` that have no annotation nor skip; returns how many went.

        One Data Manager action (``delete_tasks``) whose filter is the server's own check, made
        in the same request: a task answered since it was listed stays.  Safe to repeat.
        """
        client = self._http()
        what = f"Removing {len(task_ids)} duplicate task(s) from Label Studio project {self.project}"
        body = {"selectedItems": {"all": False, "included": [int(t) for t in task_ids]},
                "filters": {"conjunction": "and", "items": UNANSWERED}}
        response = self._send(lambda: client.post("/api/dm/actions/", params={"id": "delete_tasks", "project": self.project}, json=body),
                              what)
        answer = response_json(response, what=f"{what} ({self.url})", secrets=self._secrets)
        done = answer.get("processed_items") if isinstance(answer, Mapping) else None
        return done if isinstance(done, int) and not isinstance(done, bool) else 0

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

    # ------------------------------------------------------------------ webhooks
    def register_webhook(self, url: str, *, secret: str, header: str = "X-Alscale-Secret") -> int:
        """Create (or update) the project's webhook to ``url`` for annotation events; returns its id.

        The shared ``secret`` travels in the custom ``header`` of every webhook call.
        """
        return self.ensure_webhook(url, secret=secret, header=header)[0]

    def ensure_webhook(self, url: str, *, secret: str, header: str = "X-Alscale-Secret") -> tuple[int, bool]:
        """:meth:`register_webhook`, also saying whether the webhook was created (True) or found and updated (False)."""
        client = self._http()
        self.project_info()
        secrets = (*self._secrets, secret)
        body = {"project": self.project, "url": url, "send_payload": True, "send_for_all_actions": False,
                "headers": {header: secret}, "is_active": True, "actions": list(WEBHOOK_ACTIONS)}
        hooks = self._get("/api/webhooks/", {"project": self.project}, what="Listing Label Studio webhooks")
        same = [h for h in hooks if h.get("url") == url and h.get("project") in (self.project, None)]
        what = f"Registering a webhook in Label Studio project {self.project} ({self.url})"
        if same:
            response = send_with_retries(lambda: client.patch(f"/api/webhooks/{same[0]['id']}/", json=body), what=what,
                                         retries=self.retries, backoff=self.backoff, secrets=secrets)
        else:  # a POST is not repeated: a lost answer could leave two webhooks
            try:
                response = client.post("/api/webhooks/", json=body)
            except httpx.HTTPError as exc:
                raise QueueUnavailableError(f"{what} failed: {describe_failure(exc, secrets)}; run it again (it finds a webhook it made).") from None
        hook = response_json(check_response(response, what=what, secrets=secrets), what=what, secrets=secrets)
        if not isinstance(hook, Mapping) or "id" not in hook:
            raise QueueError(f"{what}: expected the webhook's id in the answer. Got {hook!r:.80}.")
        return int(hook["id"]), not same

    def delete_webhook(self, hook_id: int) -> None:
        """Remove the webhook ``hook_id`` (one already gone is no error)."""
        client = self._http()
        what = f"Removing webhook {hook_id} from Label Studio project {self.project} ({self.url})"
        response = send_with_retries(lambda: client.delete(f"/api/webhooks/{int(hook_id)}/"), what=what,
                                     retries=self.retries, backoff=self.backoff, secrets=self._secrets)
        if response.status_code != 404:
            check_response(response, what=what, secrets=self._secrets)
