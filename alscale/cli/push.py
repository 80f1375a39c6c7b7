"""``alscale push``: send a batch manifest to a labeling queue and record it as pending."""

from __future__ import annotations

import functools

import click

__all__ = ["command", "queue_options", "queue_settings"]


def queue_options(command: str):
    """Options of ``push`` or ``pull`` (``command``): the queue, from flags and/or a config file."""
    pulling = command == "pull"
    common = [
        click.option("--config", "config", type=click.Path(dir_okay=False), help="TOML/YAML file with a [queue] table."),
        click.option("--to", "kind", type=click.Choice(["label-studio", "http", "file"]),
                     help="Queue kind (or 'kind' in the config)" + ("; http is push-only: its labels come back with --to file"
                                                                    if pulling else "") +
                          ". [default: label-studio when --project is given]"),
        click.option("--url", help="Label Studio base URL." if pulling else "Label Studio base URL, or the HTTP endpoint."),
        click.option("--project", type=int, help="Label Studio project id."),
        click.option("--token-env", help="Env variable holding the Label Studio token. [default: LABEL_STUDIO_API_KEY]"),
    ]
    only = {
        "push": [
            click.option("--secret-env", help="Env variable holding the HTTP signing secret. [default: ALSCALE_HTTP_SECRET]"),
            click.option("--path", help="The file of --to file ('{run_id}' is replaced by the batch's run id)."),
            click.option("--data-column", "data_columns", multiple=True, help="Pool column to send, 'col' or 'key=col' (repeat)."),
            click.option("--format", "format", type=click.Choice(["jsonl", "csv", "parquet", "groundtruth"]),
                         help="File format. [default: from the --path suffix; .manifest is groundtruth]"),
            click.option("--source-column", help="The data column that is a Ground Truth manifest's source (or give one --data-column)."),
            click.option("--overwrite", is_flag=True, default=None,
                         help="Replace a --to file output that holds a different export (by default that is refused)."),
        ],
        "pull": [click.option("--labels", help="Labels file to read (--to file): id and label columns, CSV, JSONL or Parquet.")],
    }[command]
    options = [*common, *only, click.option("--workspace", "-w", required=True, type=click.Path(file_okay=False),
                                            help="The active-learning workspace.")]

    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def queue_settings(config, **flags) -> dict:
    """Flags over the config file's [queue] table; flags not given leave the file's values."""
    from alscale.queues import load_queue_settings

    data = load_queue_settings(config) if config else {}
    for key, value in flags.items():
        if value is not None and value != ():
            data[key] = list(value) if isinstance(value, tuple) else value
    data.setdefault("kind", "label-studio" if "project" in data else None)
    return data


def _flags(func):
    @functools.wraps(func)
    def wrapper(manifest=None, config=None, workspace=None, **flags):
        return func(manifest=manifest, settings=queue_settings(config, **flags), workspace=workspace)

    return wrapper


@click.command("push")
@click.argument("manifest", type=click.Path(exists=True))
@queue_options("push")
@_flags
def command(manifest, settings, workspace):
    """Send the batch in MANIFEST (a directory written by `alscale select` or `alscale round`:
    ws/rounds/NNN/batch, or the batch.parquet in it) to a queue.

    Examples, where the token is in $LABEL_STUDIO_API_KEY:

    \b
      alscale push batches/round-3 -w ws --url http://127.0.0.1:8080 --project 3 --data-column text
      alscale push batches/round-3 -w ws --to file --path out/{run_id}.jsonl --data-column text

    Label Studio is asked which ids it holds already and gets only the others; a file is not
    rewritten for the same batch; an HTTP endpoint gets the run id as Idempotency-Key.  What
    reached the queue is recorded as pending in the workspace, so the next selection excludes it.
    """
    from alscale.queues import push

    result = push(manifest, settings, workspace=workspace)
    written = f" -> {result.details['path']}" if "path" in result.details else ""  # a file queue's path with {run_id} filled in
    if result.queue.startswith("http:"):  # an endpoint cannot be asked what it holds: it dedups on the Idempotency-Key
        click.echo(f"{result.queue}: sent {len(result.pushed)} (batch {result.run_id} as Idempotency-Key, HTTP "
                   f"{result.details.get('status')}, {result.seconds:.2f}s)")
        return
    removed = result.details.get("duplicates_removed")  # Label Studio: copies of its tasks that a push at the same time made
    gone = f", {removed} duplicate task(s) of another push removed" if removed else ""
    click.echo(f"{result.queue}: pushed {len(result.pushed)} new, {len(result.existing)} already there{gone} "
               f"(batch {result.run_id}, {result.seconds:.2f}s){written}")
