"""Import labels from a CSV or Parquet file into a workspace."""

from __future__ import annotations

import pathlib

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from alscale.exceptions import LabelError
from alscale.loop.workspace import Workspace

__all__ = ["import_labels", "read_label_file"]


def read_label_file(path, *, id_column: str = "id", label_column: str = "label") -> pa.Table:
    """Read the id and label columns of a CSV or Parquet file.

    Returns
    -------
    pyarrow.Table
        The two columns, in that order; a CSV's both as strings.

    Raises
    ------
    LabelError
        If the file cannot be read or lacks a column.
    """
    path = pathlib.Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            # both as text: type guessing would turn id "00003" into 3 and a label "true" into True
            as_text = pacsv.ConvertOptions(column_types={id_column: pa.string(), label_column: pa.string()})
            table = pacsv.read_csv(path, convert_options=as_text)
    except (OSError, pa.ArrowInvalid) as exc:
        raise LabelError(f"Cannot read the label file {path}: {exc}") from None
    missing = [c for c in (id_column, label_column) if c not in table.column_names]
    if missing:
        raise LabelError(f"Expected columns {missing} in {path}. Got columns {table.column_names}.")
    return table.select([id_column, label_column])


def import_labels(ws: Workspace | str | pathlib.Path, path, *, id_column: str = "id", label_column: str = "label",
                  source: str | None = None, annotator: str | None = None) -> tuple[int, int]:
    """Record every row of a label file; a row with an empty label is recorded as skipped.

    The Python side of ``alscale label``, with the same defaults.  Importing the same file
    again changes nothing; a corrected label replaces the old one.

    Parameters
    ----------
    ws : Workspace or path
    path : str or path
        A CSV or Parquet file (``.parquet``/``.pq``; anything else is read as CSV).
    id_column, label_column : str, default "id", "label"
        The file's columns holding the ids and the labels.
    source : str, optional
        Where the labels come from; by default the file name.
    annotator : str, optional
        Who gave these labels, kept with each record.

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
        The file cannot be read or lacks a column, or a label or id is not acceptable (the
        whole file is then rejected).
    """
    from alscale.config import check_path

    path = check_path("path", path)
    ws = ws if isinstance(ws, Workspace) else Workspace.open(check_path("ws", ws))
    table = read_label_file(path, id_column=id_column, label_column=label_column)
    src = source or pathlib.Path(path).name
    records = [{"id": i, "label": lab, "status": "labeled" if lab not in (None, "") else "skipped", "source": src,
                "annotation_id": None, "annotator": annotator}
               for i, lab in zip(table.column(id_column).to_pylist(), table.column(label_column).to_pylist())]
    for r in records:
        if r["status"] == "skipped":
            r["label"] = None
    return len(records), ws.record_labels(records)
