"""``alscale label``: import labels from a CSV or Parquet file into a workspace."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("label")
@click.argument("workspace")
@click.argument("file")
@click.option("--id-column", default="id", show_default=True, help="Column of FILE holding the ids.")
@click.option("--label-column", default="label", show_default=True, help="Column of FILE holding the labels (empty: skipped).")
@click.option("--source", default=None, help="Where the labels come from. [default: the file name]")
@click.option("--annotator", default=None, help="Who gave these labels, kept with each record.")
def command(workspace, file, id_column, label_column, source, annotator):
    """Record the labels in FILE (CSV or Parquet: id and label columns) in WORKSPACE.

    Labels outside the known classes or ids outside the pool reject the whole file.  Importing
    the same file again changes nothing; a corrected label replaces the old one.
    """
    from alscale.loop.labels import import_labels
    from alscale.loop.workspace import Workspace

    ws = Workspace.open(workspace)
    n, changed = import_labels(ws, file, id_column=id_column, label_column=label_column, source=source, annotator=annotator)
    counts = ws.label_counts()
    click.echo(f"{n} labels read from {file}, {changed} new or changed; labeled set now {counts['training']:,} for training, "
               f"{counts['evaluation']:,} of the evaluation set, {counts['skipped']:,} skipped")
