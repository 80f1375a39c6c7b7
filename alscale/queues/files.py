"""Files for tools without an API: JSONL, CSV, Parquet and a SageMaker Ground Truth manifest.

Formats (one record per selected example, in rank order)
---------------------------------------------------------
``jsonl``
    ``{<data columns>, "alscale_id", "alscale_run", "rank", "score", "prediction", "confidence",
    "meta": {...the same alscale fields...}}``.  Prodigy shows ``meta`` under the task and takes
    ``text``/``image`` at the top level; doccano keeps unknown keys as metadata; Argilla maps top
    level fields and ``meta``/metadata on import.
``csv``
    The flat fields (no ``meta``); lists are written as JSON text.
``parquet``
    The flat fields with native types.
``groundtruth``
    A SageMaker Ground Truth input manifest (JSON lines).  Each line holds ``"source-ref"`` when
    the source column's value is an ``s3://`` URI, else ``"source"`` (inline text), plus
    ``alscale-id``, ``alscale-run`` and ``alscale-prediction`` attributes.

Every file is written atomically (temporary file beside it, fsync, rename), so a reader never
sees half a batch.  ``{run_id}`` in the path is replaced by the batch's run id.

Labels come back through :meth:`FileConnector.pull` from a labels file (CSV, JSONL or Parquet
with ``id``/``alscale_id`` and ``label`` columns, optional ``status`` and ``annotator``), read by
:func:`read_labels`, which ``alscale label`` shares.  A pull needs no ``path``: only ``labels``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alscale._atomic import atomic_write_bytes
from alscale.config import check_path
from alscale.exceptions import AlscaleError, ConfigError, OutputError, QueueError, first_line
from alscale.queues.base import STATUSES, BatchView, PushResult, load_batch_for, one_push_at_a_time, open_workspace

__all__ = ["FORMATS", "FileConnector", "LABEL_FILE_FORMATS", "atomic_write", "export_records", "read_labels"]

FORMATS = ("jsonl", "csv", "parquet", "groundtruth")
_FLAT = ("alscale_id", "alscale_run", "rank", "score", "prediction", "confidence")


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; OutputError naming the file when that fails."""
    try:
        return atomic_write_bytes(path, data)
    except OSError as exc:
        raise OutputError(f"Cannot write {str(path)!r}: {exc.strerror or exc}.") from None


def export_records(batch: BatchView) -> list[dict]:
    """Flat records: data columns first, then the alscale fields."""
    out = []
    for r in batch.rows:
        rec = dict(r["data"])
        rec.update({"alscale_id": r["id"], "alscale_run": batch.run_id, "rank": r["rank"], "score": r["score"],
                    "prediction": r["predicted_class"], "confidence": r["confidence"]})
        out.append(rec)
    return out


def _jsonl(batch: BatchView) -> bytes:
    lines = []
    for rec in export_records(batch):
        rec["meta"] = {k: rec[k] for k in _FLAT}
        lines.append(json.dumps(rec, ensure_ascii=False, default=str, allow_nan=False))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _csv(batch: BatchView) -> bytes:
    records = export_records(batch)
    buf = io.StringIO()
    fields = list(records[0]) if records else list(_FLAT)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in rec.items()})
    return buf.getvalue().encode("utf-8")


def _parquet(batch: BatchView) -> bytes:
    sink = pa.BufferOutputStream()
    records = export_records(batch)
    table = pa.Table.from_pylist(records) if records else pa.table({k: pa.array([], pa.null()) for k in _FLAT})
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _groundtruth(batch: BatchView, source_key: str | None) -> bytes:
    if source_key is None:
        if len(batch.rows) and len(batch.rows[0]["data"]) != 1:
            raise ConfigError(f"A Ground Truth manifest needs one source column: name it with 'source_column' or pass exactly one data column. Got {list(batch.rows[0]['data'])}.")
        source_key = next(iter(batch.rows[0]["data"])) if batch.rows else None
    lines = []
    for r in batch.rows:
        value = r["data"].get(source_key)
        if value is None:
            raise QueueError(f"Expected a value in source column {source_key!r} for id {r['id']!r}. Got none.")
        key = "source-ref" if isinstance(value, str) and value.startswith("s3://") else "source"
        rec = {key: value if key == "source-ref" else str(value), "alscale-id": r["id"], "alscale-run": batch.run_id,
               "alscale-rank": r["rank"], "alscale-prediction": r["predicted_class"], "alscale-confidence": r["confidence"]}
        lines.append(json.dumps(rec, ensure_ascii=False, default=str, allow_nan=False))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


#: The labels files :func:`read_labels` reads, by suffix (``alscale label`` and ``alscale pull --to file``).
LABEL_FILE_FORMATS = ("CSV (.csv), JSON lines (.jsonl, .json, .ndjson) or Parquet (.parquet, .pq); "
                      "another suffix is JSON lines if the file starts with '{', else CSV")


_LABEL_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def _label_file_format(path: Path) -> str:
    """"csv", "jsonl" or "parquet": by suffix, else JSON lines when the file starts with '{'."""
    fmt = _LABEL_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        with open(path, "rb") as fh:
            fmt = "jsonl" if fh.read(64).decode("utf-8-sig", errors="replace").lstrip().startswith("{") else "csv"
    return fmt


def _label_file_rows(path: Path, wanted: Sequence[str]) -> tuple[list, list[str]]:
    """The rows of a labels file (a Parquet file's ``wanted`` columns only) and its column names.

    Raises
    ------
    ValueError
        An empty file, a CSV row whose fields do not match the header (a quote left open, a
        comma too many or too few), or a JSON line that does not parse; the message names the line.
    """
    if path.stat().st_size == 0:
        raise ValueError("the file is empty: expected a header row (CSV), JSON lines or Parquet")
    fmt = _label_file_format(path)
    if fmt == "parquet":
        names = pq.read_schema(path).names
        _refuse_repeated(names, "the schema")
        return pq.read_table(path, columns=[c for c in names if c in wanted]).to_pylist(), names
    if fmt == "csv":
        return _csv_rows(path)
    rows = []
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("[") and _is_json_array_of_rows(text):
        raise ValueError("expected JSON lines, one object per line; got a JSON array (write one {\"id\": ..., \"label\": ...} per line)")
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may be in a string
        if line.strip():
            try:
                rows.append(json.loads(line, object_pairs_hook=_object_without_repeats))
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number} is not JSON ({exc.msg}; column {exc.colno})") from None
    return rows, list(rows[0]) if rows and isinstance(rows[0], dict) else []


def _refuse_repeated(names: Sequence[str], where: str) -> None:
    """ValueError naming a column that ``names`` holds twice (all but one of its values would be dropped unseen)."""
    seen, repeated = set(), []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise ValueError(f"{where} names the column {repeated[0]!r} twice (columns {list(names)}); expected each column once")


def _is_json_array_of_rows(text: str) -> bool:
    """Whether ``text`` is one JSON array (over several lines, or of objects): a JSON file, not JSON lines."""
    try:
        whole = json.loads(text)
    except ValueError:
        return False
    lines = [line for line in text.split("\n") if line.strip()]
    return isinstance(whole, list) and (len(lines) > 1 or bool(whole) and all(isinstance(v, dict) for v in whole))


def _object_without_repeats(pairs: list[tuple]) -> dict:
    """A JSON object, refused when it names a key twice (json.loads would keep the last silently)."""
    _refuse_repeated([k for k, _ in pairs], "a JSON line")
    return dict(pairs)


def _csv_rows(path: Path) -> tuple[list[dict], list[str]]:
    """A CSV labels file's rows (every value as text: "00003" stays an id, "true" a label) and header."""
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets write a byte-order mark
        reader = csv.reader(fh, strict=True)
        start, rows = 1, []  # the line the row being read starts on
        try:
            header = next(reader, [])
            _refuse_repeated(header, "the header")
            start = reader.line_num + 1
            for values in reader:
                if values and len(values) != len(header):
                    raise ValueError(f"line {start} has {len(values)} field(s), the header {len(header)} ({','.join(header)}); "
                                     "a quote left open or a comma too many or too few?")
                if values:
                    rows.append(dict(zip(header, values)))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise ValueError(f"line {start}: {exc} (a quote left open?)") from None
    return rows, header


def read_labels(path: str | os.PathLike, *, source: str, id_column: str | None = None, label_column: str = "label",
                error: type[AlscaleError] = QueueError) -> list[dict]:
    """Label records from a labels file: what ``alscale pull --to file`` and ``alscale label`` read.

    Parameters
    ----------
    path : str or path
        A CSV file (``.csv``, every value read as text), JSON lines (``.jsonl``, ``.json``,
        ``.ndjson``) or Parquet (``.parquet``, ``.pq``); a file of another suffix is read as
        JSON lines when it starts with ``{``, else as CSV.
    source : str
        Where the labels come from, kept with each record.
    id_column : str, optional
        The column of ids; by default ``alscale_id`` where a row has one (an exported batch with
        labels added), else ``id``.
    label_column : str, default "label"
        The column of labels; an empty label is a skip.
    error : type, default QueueError
        The error raised for a file that cannot be read or used.

    Returns
    -------
    list of dict
        One ``{"id", "label", "status", "source", "annotation_id", "annotator"}`` per row;
        ``status`` is the row's ``status`` column, else "labeled" or "skipped" from its label,
        and ``annotator`` the row's ``annotator`` column.

    Raises
    ------
    QueueError (or ``error``)
        The file cannot be read, has no label or id column, or a row is not an object, has no
        id or an unknown status: the whole file is refused.
    """
    path = Path(path)
    ids = (id_column,) if id_column else ("alscale_id", "id")
    try:
        rows, columns = _label_file_rows(path, (*ids, label_column, "status", "annotator"))
    except (OSError, ValueError, csv.Error, pa.ArrowException) as exc:
        raise error(f"Cannot read labels file {str(path)!r}: {first_line(exc)}") from None
    named = " or ".join(repr(c) for c in reversed(ids))  # 'id' or 'alscale_id'
    for what, keys in ((repr(label_column), (label_column,)), (named, ids)):
        if rows and all(isinstance(row, dict) and not any(k in row for k in keys) for row in rows):
            # a missing label column would read every row as skipped, and leave the pending set unlabeled
            hint = ""
            if len(columns) == 1 and any(d in str(columns[0]) for d in ";\t|"):
                delimiter = next(d for d in ";\t|" if d in str(columns[0]))
                hint = (f"; the header looks delimited by {delimiter!r}, expected commas (save the file as comma-separated "
                        "CSV, e.g. from a spreadsheet whose list separator is ';')")
            raise error(f"Expected a {what} column in {str(path)!r}. Got columns {columns}{hint}.")
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise error(f"Expected each row of {str(path)!r} to be an object with an {ids[-1]!r} and a {label_column!r}. Got {row!r:.60} in row {i + 1}.")
        key = next((k for k in ids if k in row), ids[-1])
        if row.get(key) in (None, ""):
            raise error(f"Expected an {named} in every row of {str(path)!r}. Got none in row {i + 1}.")
        label = row.get(label_column)
        label = None if label in (None, "") else str(label)
        status = row.get("status") or ("labeled" if label is not None else "skipped")
        if status not in STATUSES:
            raise error(f"Expected a status among {list(STATUSES)} in {str(path)!r}. Got {status!r} in row {i + 1}.")
        records.append({"id": row[key], "label": label if status == "labeled" else None, "status": status, "source": source,
                        "annotation_id": None, "annotator": row.get("annotator") or None})
    return records


def _holds(target: Path, data: bytes) -> bool:
    """Whether ``target`` is a file holding exactly ``data`` (anything else there is the write's to report)."""
    try:
        return target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data
    except OSError:
        return False


class FileConnector:
    """Export batches as files; read labels back from a labels file.

    Parameters
    ----------
    path : str or path, optional
        Output file of :meth:`push`; ``{run_id}`` is replaced by the batch's run id.  Only a
        push needs it: :meth:`pull` reads ``labels``.  One of the two must be given.
    format : {"jsonl", "csv", "parquet", "groundtruth"}, optional
        Taken from the suffix when omitted (``.manifest`` means groundtruth).
    data_columns : list of str or dict, optional
    source_column : str, optional
        The data column that is the Ground Truth ``source``/``source-ref``.
    labels : str or path, optional
        A labels file :meth:`pull` reads (see :func:`read_labels`).
    overwrite : bool, default False
        Replace a file that holds a different export.  By default such a push is refused, so
        an export the labeling tool has not read yet is never lost; pushing the same batch
        again (a retry) rewrites nothing and is always allowed.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, format: str | None = None, data_columns: Sequence[str] | Mapping[str, str] | None = None,
                 source_column: str | None = None, labels: str | os.PathLike | None = None, overwrite: bool = False):
        if path is None and labels is None:
            raise ConfigError("Expected 'labels' to pull from (alscale pull --labels PATH) or a 'path' to push to "
                              "(alscale push --path PATH) for the file queue. Got neither.")
        self.path = None if path is None else check_path("path", path)
        if path is not None and Path(self.path).is_dir():
            raise ConfigError(f"Expected a file for the file queue's 'path' (e.g. {os.path.join(self.path, '{run_id}.jsonl')!r}). "
                              f"Got the folder {self.path!r}.")
        suffix = "" if path is None else Path(self.path).suffix.lower().lstrip(".")
        fmt = format or {"manifest": "groundtruth", "json": "jsonl"}.get(suffix, suffix)
        if fmt not in FORMATS and (path is not None or format is not None):  # no path and no format: a queue to pull from
            origin = "" if path is None else f" (from {self.path!r})"
            raise ConfigError(f"The file 'format' must be one of {list(FORMATS)}. Got {format or suffix!r}{origin}.")
        self.format, self.data_columns, self.source_column = fmt or None, data_columns, source_column
        self.labels = None if labels is None else str(labels)
        if not isinstance(overwrite, bool):
            raise ConfigError(f"The file queue setting 'overwrite' must be true or false. Got {overwrite!r}.")
        self.overwrite = overwrite
        self.name = "file" if path is None else f"file:{Path(self.path).name}"

    def __repr__(self) -> str:
        return f"FileConnector(path={self.path!r}, format={self.format!r})"

    def target(self, run_id: str) -> Path:
        return Path(self.path.replace("{run_id}", run_id))

    @one_push_at_a_time
    def push(self, manifest: Any, ws: Any) -> PushResult:
        """Write the batch file atomically; its ids become pending in ``workspace``."""
        start = time.perf_counter()
        if self.path is None:
            raise ConfigError("Expected a 'path' to write the batch to (--path). Got none: a file queue without one can only pull.")
        batch = load_batch_for(ws, manifest, self.data_columns)
        if self.format == "groundtruth":
            data = _groundtruth(batch, self.source_column)
        else:
            data = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[self.format](batch)
        target = self.target(batch.run_id)
        pushed, existing = tuple(batch.ids), ()
        if _holds(target, data):  # a retry of the same batch: the file the tool may be reading is left as it is
            pushed, existing = existing, pushed
        elif self.overwrite or not target.is_file():
            target = atomic_write(target, data)
        else:
            ways = "remove it once the labeling tool has read it, or set overwrite (--overwrite)"
            if "{run_id}" not in self.path:
                ways = "put '{run_id}' in the path, " + ways
            raise OutputError(f"{str(target)!r} holds a different export already; expected a new file: {ways}.")
        if ws is not None:
            ws.add_pending(batch.ids, batch_run_id=batch.run_id, queue=self.name)
        return PushResult(queue=self.name, run_id=batch.run_id, pushed=pushed, existing=existing, seconds=time.perf_counter() - start,
                          details={"path": str(target), "format": self.format})

    def pull(self, *, workspace: Any = None) -> list[dict]:
        """Label records from the labels file (none configured: an error)."""
        if self.labels is None:
            raise QueueError(f"Expected a labels file to pull from for {self.path!r}. Got none; pass labels=PATH (alscale pull --labels PATH).")
        # the source `alscale label` gives the same file (its name): one file is one source, whichever command reads it
        records = read_labels(self.labels, source=Path(self.labels).name)
        ws = open_workspace(workspace)
        if ws is not None and records:
            ws.record_labels(records)
        return records

    def pending(self) -> list:
        raise QueueError(f"A file queue ({self.path!r}) cannot list pending ids: expected them from the workspace (Workspace.pending()).")
