"""``alscale label``: import labels from a labels file (CSV, JSON lines or Parquet) into a workspace."""

from __future__ import annotations

import click

from alscale.queues.files import LABEL_FILE_FORMATS

__all__ = ["command"]


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@click.command("label", help=f"""Record the labels in FILE in WORKSPACE.

    FILE is read as `alscale pull --to file --labels FILE` reads it: {LABEL_FILE_FORMATS};
    an id column and a label column (an empty label is a skip), optional status and annotator
    columns.  Labels outside the known classes or ids outside the pool reject the whole file.
    Importing the same file again changes nothing; a corrected label replaces the old one.
    """)
@click.argument("workspace")
@click.argument("file")
@click.option("--id-column", default=None, help="Column of FILE holding the ids. [default: alscale_id where a row has one, else id]")
@click.option("--label-column", default="label", show_default=True, help="Column of FILE holding the labels (empty: skipped).")
@click.option("--source", default=None, help="Where the labels come from. [default: the file name]")
@click.option("--annotator", default=None, help="Who gave these labels, kept with each record. [default: FILE's annotator column]")
def command(workspace, file, id_column, label_column, source, annotator):
    from alscale.loop.labels import import_labels
    from alscale.loop.workspace import Workspace

    ws = Workspace.open(workspace)
    n, changed = import_labels(ws, file, id_column=id_column, label_column=label_column, source=source, annotator=annotator)
    counts = ws.label_counts()
    evaluation = f"{counts['evaluation']:,} of the evaluation set"
    if counts["evaluation"] and ws.config.get("label_column"):  # rounds evaluate on the pool's column, not on these
        evaluation += f" (not used: rounds take the evaluation set's labels from the pool's column {ws.config['label_column']!r})"
    click.echo(f"{_plural(n, 'label')} read from {file}, {changed:,} new or changed; labeled set now {counts['training']:,} for training, "
               f"{evaluation}, {counts['skipped']:,} skipped")
