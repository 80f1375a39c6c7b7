"""``alscale pull``: take finished annotations back from a labeling queue into the workspace."""

from __future__ import annotations

import collections

import click

from alscale.cli.push import queue_options, queue_settings

__all__ = ["command"]


@click.command("pull")
@queue_options("pull")
def command(config, workspace, **flags):
    """Record the queue's finished annotations in the workspace (idempotent).

    Skipped and cancelled annotations are recorded as such, not as labels.  Examples:

    \b
      alscale pull -w ws --url http://127.0.0.1:8080 --project 3
      alscale pull -w ws --to file --path out/{run_id}.jsonl --labels labels.csv
    """
    from alscale.queues import pull

    records = pull(queue_settings(config, **flags), workspace=workspace)
    counts = collections.Counter(r["status"] for r in records)
    click.echo(f"pulled {len(records)} annotations: " + ", ".join(f"{counts[s]} {s}" for s in ("labeled", "skipped", "cancelled")))
