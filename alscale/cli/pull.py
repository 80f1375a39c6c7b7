"""``alscale pull``: take finished annotations back from a labeling queue into the workspace."""

from __future__ import annotations

import collections

import click

from alscale.cli.push import queue_options, queue_settings

__all__ = ["command"]


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


class _CountingWorkspace:
    """A workspace that adds up what its ``record_labels`` calls say was new or changed.

    A connector records what it pulled itself (Label Studio's pull leaves out another
    workspace's tasks first), so the count is taken where it records.
    """

    def __init__(self, ws):
        self._ws, self.changed = ws, 0

    def __getattr__(self, name):
        return getattr(self._ws, name)

    def record_labels(self, records, **kwargs) -> int:
        changed = self._ws.record_labels(records, **kwargs)
        self.changed += changed
        return changed


@click.command("pull")
@queue_options("pull")
def command(config, workspace, **flags):
    """Record the queue's finished annotations in the workspace (idempotent).

    Skipped and cancelled annotations are recorded as such, not as labels.  A file queue
    (--to file) reads --labels: CSV, JSON lines or Parquet, as `alscale label` does.  Examples:

    \b
      alscale pull -w ws --url http://127.0.0.1:8080 --project 3
      alscale pull -w ws --to file --labels labels.csv
    """
    from alscale.loop.workspace import Workspace
    from alscale.queues import make_connector, pull

    settings = queue_settings(config, **flags)
    if settings.get("kind") in (None, "label-studio") and "url" in settings and "project" not in settings:
        raise click.UsageError("--project is required with --url: the id of the Label Studio project to pull from.")
    if settings.get("kind") == "file":
        settings.setdefault("path", None)  # a file queue's path (a config file's) is where a push writes; a pull reads --labels
    connector = make_connector(settings)
    ws = _CountingWorkspace(Workspace.open(workspace))
    records = pull(connector, workspace=ws)
    counts = collections.Counter(r["status"] for r in records)
    click.echo(f"pulled {_plural(len(records), 'annotation')}: " + ", ".join(f"{counts[s]:,} {s}" for s in ("labeled", "skipped", "cancelled"))
               + f"; {ws.changed:,} new or changed")
