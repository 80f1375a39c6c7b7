"""Manifest writing and reading."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alscale._atomic import creation_problem, fsync_dir, fsync_file
from alscale.config import check_path
from alscale.exceptions import OutputError, first_line

__all__ = ["BATCH_FILE", "MANIFEST_FILE", "SCHEMA_VERSION", "Manifest", "check_output_free", "manifest_json", "write_manifest"]

SCHEMA_VERSION = 1
BATCH_FILE = "batch.parquet"
MANIFEST_FILE = "manifest.json"


@dataclass
class Manifest:
    """A selected batch and its provenance.

    Attributes
    ----------
    path : pathlib.Path or None
        The output directory (None when the result was not written).
    data : dict
        The content of ``manifest.json``.
    batch : pyarrow.Table
        ``batch.parquet``: id, rank, score, strategy, predicted_class, predicted_index,
        confidence (and cluster for some strategies), in rank order.
    """

    path: Path | None
    data: dict[str, Any]
    batch: pa.Table

    @property
    def ids(self) -> list:
        return self.batch.column("id").to_pylist()

    @property
    def run_id(self) -> str:
        return self.data["run_id"]

    @classmethod
    def read(cls, path: str | os.PathLike) -> Manifest:
        """Read a manifest directory written by :func:`write_manifest`.

        Parameters
        ----------
        path : str or path
            The directory holding ``manifest.json`` and ``batch.parquet`` (or one of those two
            files: its directory is read).

        Returns
        -------
        Manifest

        Raises
        ------
        OutputError
            ``path`` is not a path, or holds no readable manifest.
        """
        path = Path(check_path("path", path, OutputError))
        if path.name in (MANIFEST_FILE, BATCH_FILE) and path.is_file():
            path = path.parent
        elif path.is_file():
            raise OutputError(f"Expected a batch folder (written by select or round), or the {BATCH_FILE} or {MANIFEST_FILE} "
                              f"in it. Got the file {str(path)!r}.")
        try:
            data = json.loads((path / MANIFEST_FILE).read_text())
            batch = pq.read_table(path / BATCH_FILE)
        except FileNotFoundError:
            raise OutputError(f"{str(path)!r} is not a batch manifest: expected {MANIFEST_FILE} and {BATCH_FILE} in it.") from None
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise OutputError(f"Cannot read batch manifest {str(path)!r}: {first_line(exc)}") from None
        return cls(path=path, data=data, batch=batch)

    def summary(self, rows: int = 10) -> str:
        """A short human-readable description of the batch."""
        d = self.data
        lines = [
            f"selected {self.batch.num_rows} of {d['counts']['rows_total']:,} rows with {d['strategy']['name']} "
            f"(k={d['k']}, seed={d['seed']})",
        ]
        head = self.batch.slice(0, rows).to_pylist()
        for row in head:
            lines.append(
                f"  #{row['rank']:<4} id={row['id']!s:<12} score={row['score']:.4f} "
                f"predicted={row['predicted_class']} ({row['confidence']:.2f})"
            )
        if self.batch.num_rows > rows:
            lines.append(f"  ... {self.batch.num_rows - rows} more")
        return "\n".join(lines)


def other_files_message(where: str, others: list[str]) -> str:
    """The error for an output folder that holds more than an earlier output (``where``: how to name it)."""
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return (f"Output {where} holds files of its own ({shown}): force replaces only an output alscale wrote ({MANIFEST_FILE} "
            f"and {BATCH_FILE}), never other files; move them or choose another output. Nothing was removed.")


def check_output_free(out: str | os.PathLike, force: bool) -> None:
    """Fail early if ``out`` exists and ``force`` is not set, or is not a place this can write to."""
    if "://" in str(out):
        raise OutputError(f"Expected a local output directory. Got the URI {str(out)!r}: write locally and copy it, "
                          "or submit jobs/select_job.py, which publishes a manifest to a filesystem URI.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"Expected a directory for the output. Got {str(out)!r}, which is a file: force replaces an "
                          "earlier output, never a file; choose another output.")
    if out.exists() and not force:
        raise OutputError(f"Output directory {str(out)!r} exists already; set force (--force) to replace it.")
    others = sorted(p.name for p in out.iterdir() if p.name not in (MANIFEST_FILE, BATCH_FILE)) if out.is_dir() else []
    if others:  # --force replaces an earlier output, never files of the user's beside it (notes, a pool, a project)
        raise OutputError(other_files_message(repr(str(out)), others))
    problem = creation_problem(out)  # of the directories write_manifest would create
    if problem:
        raise OutputError(f"Cannot write output {str(out)!r}: {problem}.")


def manifest_json(data: dict[str, Any]) -> bytes:
    """``manifest.json``'s bytes for ``data``: indented, keys in the order given, a final newline."""
    return (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")


def write_manifest(out: str | os.PathLike, batch: pa.Table, data: dict[str, Any], *, force: bool = False) -> Manifest:
    """Write ``batch.parquet`` and ``manifest.json`` into ``out`` atomically.

    The same ``batch`` gives a byte-identical ``batch.parquet`` (no timestamps in it).

    Raises
    ------
    OutputError
        ``out`` exists and ``force`` is False, or it cannot be written.
    """
    out = Path(out)
    check_output_free(out, force)
    parent = out.parent if str(out.parent) else Path(".")
    tmp = parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        pq.write_table(batch, tmp / BATCH_FILE, compression="zstd", write_statistics=True)
        fsync_file(tmp / BATCH_FILE)  # on disk before the rename: a crash never leaves a manifest beside an empty batch
        with open(tmp / MANIFEST_FILE, "wb") as fh:
            fh.write(manifest_json(data))
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(tmp)
        if out.exists():  # force: move the old one aside, then swap
            trash = parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(out, trash)
            os.rename(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, out)
        fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"Cannot write manifest to {str(out)!r}: {exc.strerror or exc}.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Manifest(path=out, data=data, batch=batch)
