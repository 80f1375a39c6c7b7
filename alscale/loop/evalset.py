"""Reserve the evaluation set and the stop set: uniform random samples keyed on row ids.

Both are drawn from ``(seed, id)`` with :func:`alscale.rowrandom.row_uniform`, so the sample
does not depend on file order or sharding: the ``n`` rows with the smallest draws are taken.
Only the id column is read.

* The **evaluation set** is labeled once and never selected or trained on; every round's
  metrics are measured on it.
* The **stop set** is a fixed random set of pool rows that needs no labels: successive models'
  predictions on it are compared for the stabilizing-predictions stopping rule (Bloodgood and
  Vijay-Shanker 2009).
"""

from __future__ import annotations

import math

import numpy as np

from alscale.exceptions import ConfigError
from alscale.rowrandom import id_keys, row_uniform

__all__ = ["EVAL_STREAM", "STOP_STREAM", "default_eval_size", "reserve_random", "resolve_size", "size_from_flag"]

EVAL_STREAM = 0x65_76_61_6C  # "eval"
STOP_STREAM = 0x73_74_6F_70  # "stop"
SEED_STREAM = 0x73_65_65_64  # "seed"


def default_eval_size(n_pool: int) -> int:
    """Default evaluation-set size: a fifth of the pool, at most 1000 rows."""
    return int(min(1000, n_pool // 5))


def size_from_flag(value: str | float) -> int | float:
    """A size typed on the command line (``--eval-size``), read as the Python API reads it.

    Digits alone (``500``, ``0``) are a row count; anything else is a float, a fraction of the
    pool, so ``1.0`` and ``2.0`` are refused by :func:`resolve_size` as they are from Python, as
    are 1500.7, nan or inf.  (A float given, not text, that is a whole number >= 0 is a count:
    how the flags were read before they were read as text.)

    Raises
    ------
    ConfigError
        Text that is no number.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text) if text.isascii() and text.isdigit() else float(text)
        except ValueError:
            raise ConfigError(f"Expected a size as a row count (500) or a fraction of the pool (0.2). Got {value!r}.") from None
    return int(value) if math.isfinite(value) and value >= 0 and value == int(value) else value


def resolve_size(size, n_pool: int, *, name: str) -> int:
    """Turn a count (an int >= 0) or a fraction (a float in [0, 1)) into a row count, checked against the pool.

    A float is always a fraction of the pool: a whole-number float such as ``2.0`` is refused
    rather than read as 2 rows, which would be easy to take for 200%.

    Parameters
    ----------
    size : int or float
    n_pool : int
        Rows in the pool.
    name : str
        The setting's name, for the messages (e.g. ``"eval_size"``).

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        If the size is not a number, a negative int, a float outside [0, 1) (``0.0`` is 0 rows),
        or larger than the pool.
    """
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)) or not np.isfinite(size):
        raise ConfigError(f"The {name!r} setting must be a row count or a fraction in (0, 1). Got {size!r} instead.")
    if isinstance(size, (float, np.floating)) and 0 <= size < 1:
        count = int(round(float(size) * n_pool))
    elif isinstance(size, (int, np.integer)) and size >= 0:
        count = int(size)
    else:
        whole = isinstance(size, (float, np.floating)) and size >= 1 and size == int(size)
        hint = f"; a float is a fraction of the pool: pass the int {int(size)} for {int(size)} rows" if whole else ""
        raise ConfigError(f"The {name!r} setting must be a row count >= 0 or a fraction in (0, 1). Got {size!r} instead{hint}.")
    if count > n_pool:
        raise ConfigError(f"The {name!r} setting ({count} rows) must not be larger than the pool ({n_pool} rows).")
    return count


def reserve_random(ids: np.ndarray, n: int, *, seed: int, stream: int = EVAL_STREAM) -> np.ndarray:
    """The ``n`` ids with the smallest ``row_uniform(id_keys(ids), seed, stream)``.

    Parameters
    ----------
    ids : ndarray of shape (N,)
        Every id of the pool (int64 or str).
    n : int
        Sample size, ``0 <= n <= N``.
    seed, stream : int

    Returns
    -------
    ndarray of shape (n,)
        The sampled ids, sorted by their draw (ties broken on the id key). O(N) time.
    """
    ids = np.asarray(ids)
    if n > len(ids):
        raise ConfigError(f"Cannot sample {n} rows from a pool of {len(ids)}.")
    if n == 0:
        return ids[:0]
    keys = id_keys(ids)
    draws = row_uniform(keys, seed, stream)
    if n < len(ids):
        part = np.argpartition(draws, n - 1)[:n]
    else:
        part = np.arange(len(ids))
    order = part[np.lexsort((keys[part], draws[part]))]
    return ids[order]
