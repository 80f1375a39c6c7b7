"""Import labels from a labels file (CSV, JSON lines or Parquet) into a workspace."""

from __future__ import annotations

import pathlib

from alscale.exceptions import LabelError
from alscale.loop.workspace import Workspace

__all__ = ["import_labels"]


def import_labels(ws: Workspace | str | pathlib.Path, path, *, id_column: str | None = None, label_column: str = "label",
                  source: str | None = None, annotator: str | None = None) -> tuple[int, int]:
    """Record every row of a label file; a row with an empty label is recorded as skipped.

    The Python side of ``alscale label``, with the same defaults.  The file is read as
    ``alscale pull --to file`` reads a labels file (:func:`alscale.queues.files.read_labels`).
    Importing the same file again changes nothing; a corrected label replaces the old one.

    Parameters
    ----------
    ws : Workspace or path
    path : str or path
        A CSV file (``.csv``, every value read as text), JSON lines (``.jsonl``, ``.json``,
        ``.ndjson``) or Parquet (``.parquet``, ``.pq``); a file of another suffix is read as
        JSON lines when it starts with ``{``, else as CSV.  An optional ``status`` column
        ("labeled", "skipped", "cancelled") and ``annotator`` column are kept.
    id_column : str, optional
        The file's column of ids; by default ``alscale_id`` where a row has one (an exported
        batch with labels added), else ``id``.
    label_column : str, default "label"
        The file's column of labels.
    source : str, optional
        Where the labels come from; by default the file name.
    annotator : str, optional
        Who gave these labels, kept with each record; by default the file's ``annotator``
        column, if any.

    Returns
    -------
    (rows read, records new or changed) : tuple of int

    Raises
    ------
    ConfigError
        ``path`` or ``ws`` is not a path.
    WorkspaceError
        There is no workspace at ``ws``.
    LabelError
        The file cannot be read or lacks a column, or a label, id or status is not acceptable
        (the whole file is then rejected).
    """
    from alscale.config import check_path
    from alscale.queues.files import read_labels

    path = check_path("path", path)
    ws = ws if isinstance(ws, Workspace) else Workspace.open(check_path("ws", ws))
    records = read_labels(path, source=source or pathlib.Path(path).name, id_column=id_column, label_column=label_column,
                          error=LabelError)
    if ws.id_type == "int64":  # said with the row it is on, before the workspace sees the ids
        from alscale.loop._pool import int64_id_problem

        for row, r in enumerate(records, 1):
            why = int64_id_problem(r["id"])
            if why is not None:
                raise LabelError(f"Expected integer (int64) ids in {str(path)!r}, as the pool's. Got {r['id']!r} in row {row}: {why}.")
    if annotator is not None:
        for r in records:
            r["annotator"] = annotator
    return len(records), ws.record_labels(records)
