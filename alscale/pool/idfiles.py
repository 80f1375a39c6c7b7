"""Read id lists (exclusions, labeled sets) from Parquet, CSV or newline-separated files."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alscale.exceptions import ConfigError, first_line
from alscale.rowrandom import id_keys

__all__ = ["integer_id", "read_id_file", "read_id_keys"]


_INTEGRAL = re.compile(r"\s*([+-]?[0-9]+)(?:\.0*)?\s*")


def integer_id(value) -> int:
    """An id as an int, never truncated: ints, integral floats (``1011.0``, which CSV readers
    give for integer columns with gaps) and digit strings, also with a zero fraction
    (``"1011"``, ``"1011.0"``: what a spreadsheet or pandas writes for such a column).

    Raises
    ------
    ValueError, TypeError
        ``1011.5``, ``"1011.5"``, ``"1e3"``, ``True``, ``None`` and anything else that is not an integer.
    """
    if isinstance(value, bool):
        raise TypeError("a bool is not an id")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return int(value)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        match = _INTEGRAL.fullmatch(value)  # digits exactly: "9007199254740993.0" is not rounded through a float
        if match is None:
            raise ValueError(f"{value!r} is not an integer")
        return int(match.group(1))
    if isinstance(value, (int, np.integer)):
        return int(value)
    raise TypeError(f"{type(value).__name__} is not an id")


def _is_parquet(path: str) -> bool:
    """Whether the file starts with Parquet's magic number (``PAR1``); False where it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def read_id_file(path: str | os.PathLike, id_column: str = "id", as_int: bool = True) -> np.ndarray:
    """Read one id file.

    Parquet: the ``id_column`` column (or the only column).  CSV: a header with ``id_column``;
    a file of one column may have another header only for an integer pool (a header is not an
    integer), or none (its first row is then an id).  Anything else: one id per line, blank lines
    ignored.  A UTF-8 byte order mark (Excel's "CSV UTF-8") is dropped.

    Parameters
    ----------
    path : path-like
    id_column : str
    as_int : bool
        Parse ids as int64 (the pool has integer ids) or keep them as strings.

    Returns
    -------
    ndarray of shape (n,)
        int64, or an object array of str.
    """
    path = str(path)
    try:
        suffix = os.path.splitext(path)[1].lower()  # "IDS.CSV" as "ids.csv"
        if suffix == ".parquet" or _is_parquet(path):  # ".pq", ".parq" or no suffix: Parquet's magic number tells
            table = pq.read_table(path)
            name = id_column if id_column in table.column_names else (table.column_names[0] if table.num_columns == 1 else None)
            if name is None:
                raise ConfigError(f"Id file {path!r} has no {id_column!r} column; its columns are {table.column_names}.")
            values = table.column(name).to_pylist()
        elif suffix == ".csv":
            rows = _csv_rows(path)
            if not rows:
                values = []
            elif id_column in rows[0]:
                j = rows[0].index(id_column)
                short = next((i for i, r in enumerate(rows[1:], start=2) if r and len(r) <= j), None)
                if short is not None:
                    raise ConfigError(f"Id file {path!r}: expected a value in column {id_column!r} of every row. Got none in line {short}.")
                values = [r[j] for r in rows[1:] if r]
            elif len(rows[0]) == 1:
                values = [r[0] for r in rows if r]
                if values and as_int and not _is_int(values[0]):
                    values = values[1:]  # a header of another name: no integer id looks like one
                elif not as_int:  # a string id and a header look alike: only the column's name tells them apart
                    raise ConfigError(f"Id file {path!r} has one column headed {rows[0][0]!r}; expected the header {id_column!r} "
                                      f"(--id-column). Rename it, or give the ids one per line in a .txt file.")
            else:
                raise ConfigError(f"Id file {path!r} has no {id_column!r} column; its header is {rows[0]}.")
        else:
            with open(path, encoding="utf-8-sig") as fh:
                values = [line.strip() for line in fh if line.strip()]
    except ConfigError:
        raise
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise ConfigError(f"Cannot read id file {path!r}: {getattr(exc, 'strerror', None) or first_line(exc)}.") from None
    if as_int:
        try:
            return np.asarray([integer_id(v) for v in values], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            bad = next((v for v in values if not _fits_int64(v)), None)
            raise ConfigError(f"Id file {path!r} holds {bad!r}, but the pool's ids are integers (int64).") from None
    bad = next((v for v in values if v is None or isinstance(v, float)), 0)
    if bad != 0:  # a float column or a null would silently match no string id
        raise ConfigError(f"Id file {path!r} holds {bad!r}, but the pool's ids are strings.")
    return np.array([str(v) for v in values], dtype=object)  # not fixed-width str: one long id would pad them all


def _csv_rows(path: str) -> list[list[str]]:
    """A CSV file's rows; a quote left open (or a field past csv's size limit) is refused, naming its line."""
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's "CSV UTF-8" starts with a byte order mark
        reader = csv.reader(fh, strict=True)
        rows, start = [], 1  # the line the row being read starts on
        try:
            for row in reader:
                rows.append(row)
                start = reader.line_num + 1
        except csv.Error as exc:
            raise ConfigError(f"Cannot read id file {path!r}: line {start}: {exc} (a quote left open?).") from None
    return rows


def _fits_int64(value) -> bool:
    try:
        return -(2**63) <= integer_id(value) < 2**63
    except (TypeError, ValueError, OverflowError):
        return False


def _is_int(value) -> bool:
    try:
        integer_id(value)
        return True
    except (TypeError, ValueError, OverflowError):
        return False


def read_id_keys(paths: Sequence[str], id_column: str = "id", as_int: bool = True) -> np.ndarray:
    """The sorted unique 64-bit keys (:func:`alscale.rowrandom.id_keys`) of every id in ``paths``."""
    if not paths:
        return np.empty(0, dtype=np.uint64)
    parts = [id_keys(read_id_file(p, id_column, as_int)) for p in paths]
    return np.unique(np.concatenate(parts))
