"""Labeling queues: push a batch manifest to annotators, take their labels back.

One small protocol (:class:`Connector`: ``push``, ``pull``, ``pending``) and one module per
system behind it:

* :class:`LabelStudioConnector` -- Label Studio over REST, no duplicate tasks, predictions as
  pre-annotations ordered so annotators see the most informative example first;
* :class:`WebhookListener` -- ``alscale listen``, Label Studio's annotation webhooks into the
  workspace, with a reconcile pull so a missed webhook costs nothing;
* :class:`HttpEndpointConnector` -- a signed, idempotent, retried JSON POST to any endpoint;
* :class:`FileConnector` -- JSONL / CSV / Parquet / SageMaker Ground Truth files.

:func:`push` and :func:`pull` drive any of them and keep the workspace's pending table exact.
"""

from __future__ import annotations

from alscale.queues.api import load_queue_settings, make_connector, pull, push
from alscale.queues.base import BatchView, Connector, PushResult, load_batch
from alscale.queues.endpoint import HttpEndpointConnector, sign
from alscale.queues.files import FileConnector
from alscale.queues.labelstudio import LabelStudioConnector, prediction_score
from alscale.queues.listener import WebhookListener

__all__ = [
    "BatchView",
    "Connector",
    "FileConnector",
    "HttpEndpointConnector",
    "LabelStudioConnector",
    "PushResult",
    "WebhookListener",
    "load_batch",
    "load_queue_settings",
    "make_connector",
    "prediction_score",
    "pull",
    "push",
    "sign",
]
