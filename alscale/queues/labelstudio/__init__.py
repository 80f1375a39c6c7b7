"""Label Studio over its REST API: push a batch as tasks, pull annotations, register a webhook.

Modules: ``tasks`` (what a task holds; pure functions), ``client`` (one project over the REST API:
token, label config, task listings, webhooks), ``connector`` (the labeling queue: push and pull).

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

from alscale.queues.labelstudio.client import DEFAULT_TOKEN_ENV, WEBHOOK_ACTIONS, ProjectClient
from alscale.queues.labelstudio.connector import LabelStudioConnector
from alscale.queues.labelstudio.tasks import ID_FIELD, POOL_FIELD, RUN_FIELD, annotation_record, build_task, of_pool, prediction_score, queue_name, server_of, task_pool

__all__ = ["DEFAULT_TOKEN_ENV", "ID_FIELD", "POOL_FIELD", "RUN_FIELD", "WEBHOOK_ACTIONS", "LabelStudioConnector", "ProjectClient",
           "annotation_record", "build_task", "of_pool", "prediction_score", "queue_name", "server_of", "task_pool"]
