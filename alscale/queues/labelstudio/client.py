"""One Label Studio project over its REST API: authentication, the project's label config, task listings, webhooks.

:class:`ProjectClient` knows nothing of workspaces or batches; :class:`LabelStudioConnector`
(``connector.py``) builds the labeling queue on it.
"""

from __future__ import annotations

import json
import numbers
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from alscale.config import check_int
from alscale.exceptions import ConfigError, QueueError, QueueUnavailableError
from alscale.queues._http import check_number, check_response, check_url, describe_failure, response_json, secret_from_env, send_with_retries
from alscale.queues.base import normalize_data_columns
from alscale.queues.labelstudio.tasks import ID_FIELD, LOOKUP_FIELDS, POOL_FIELD, RUN_FIELD, UNANSWERED, chunks, id_filter, of_pool, queue_name

__all__ = ["DEFAULT_TOKEN_ENV", "WEBHOOK_ACTIONS", "ProjectClient"]

DEFAULT_TOKEN_ENV = "LABEL_STUDIO_API_KEY"
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


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

    def __init__(self, connector: ProjectClient, refresh: str):
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


class ProjectClient:
    """One Label Studio project over its REST API: the client under :class:`~alscale.queues.labelstudio.connector.LabelStudioConnector`.

    It takes the parameters :class:`LabelStudioConnector` documents (which adds none).
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
    def __enter__(self) -> ProjectClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:  # never shows the token
        return f"{type(self).__name__}(url={self.url!r}, project={self.project}, token_env={self.token_env!r})"

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
        for chunk in chunks(list(ids), self.lookup_chunk):
            wanted = set(chunk)
            for task in self._tasks(id_filter(chunk), include=LOOKUP_FIELDS):
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
