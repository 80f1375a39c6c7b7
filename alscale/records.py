"""The label record that the labeling queues hand over and the workspace keeps.

A record is a plain dict: ``{"id", "label", "status", "source", "annotation_id", "annotator"}``
(and optionally ``"answered_at"``, the queue's own time of the answer).  ``status`` is one of
:data:`STATUSES`; ``label`` is None unless the status is "labeled".  Kept here, outside both
:mod:`alscale.queues` and :mod:`alscale.loop`, so that neither imports the other for it.
"""

from __future__ import annotations

__all__ = ["STATUSES"]

#: What an annotation can be: an answer, a skip, or a cancelled task.
STATUSES = ("labeled", "skipped", "cancelled")
