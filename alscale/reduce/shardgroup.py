"""The shard-group seam: one selection driver over shards held here or on remote actors.

A diversity strategy runs in two halves.  While a shard is streamed, a *builder* keeps what
the strategy needs per row and ``finish()`` turns it into a *state* object.  The driver then
talks to every state through a :class:`ShardGroup`: ``group.map("method", *args)`` calls
``state.method(*args)`` on each shard and returns the results in shard order.  In one process
that is :class:`LocalShardGroup`; the engine provides the same protocol over Ray actors, so
every argument and result must be small and picklable (centers, counts, candidate rows),
never a shard's full arrays.  The idea follows FAISS contrib's ``DatasetAssign``: one
algorithm over swappable data backends.

Also here: :class:`Selection`, the result every diversity driver returns, and
:class:`ColumnBuffer`, the growable per-shard column store the builders share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ColumnBuffer", "LocalShardGroup", "Selection", "ShardGroup", "concat_rows"]


@runtime_checkable
class ShardGroup(Protocol):
    """Anything that can call a method on every shard's state and return the results."""

    def map(self, method: str, *args: Any, **kwargs: Any) -> list:
        """Call ``state.<method>(*args, **kwargs)`` on every shard; results in shard order."""
        ...


class LocalShardGroup:
    """A :class:`ShardGroup` over state objects held in this process.

    Parameters
    ----------
    states : iterable of objects
        One state per shard (what a builder's ``finish()`` returned).
    """

    def __init__(self, states: Iterable[Any]):
        self.states = list(states)

    def __len__(self) -> int:
        return len(self.states)

    def map(self, method: str, *args: Any, **kwargs: Any) -> list:
        """Call ``method`` on every state in turn; results in shard order."""
        return [getattr(state, method)(*args, **kwargs) for state in self.states]


@dataclass(eq=False)  # no generated ==: comparing dicts of arrays has no single truth value
class Selection:
    """The rows a diversity strategy selected, in selection order.

    Attributes
    ----------
    columns : dict of str to ndarray
        Equal-length arrays, one row per selected example: ``id`` (n,), ``score`` (n,)
        float64, ``predicted_index`` (n,) int32, ``confidence`` (n,) float32 and optionally
        ``cluster`` (n,) int32.
    info : dict
        Small JSON-friendly facts for the manifest (rounds, candidates, radius, ...).
    """

    columns: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        """The number of selected rows, n."""
        return len(self.columns["id"]) if "id" in self.columns else 0


def concat_rows(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate row payloads (dicts of equal-length arrays) from several shards.

    Parts with no rows are skipped; the keys of the first non-empty part decide the columns.
    An all-empty input gives ``{}``.
    """
    parts = [p for p in parts if p and len(next(iter(p.values()))) > 0]
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class ColumnBuffer:
    """Append-only columns, kept as chunks until :meth:`finish` concatenates them.

    Parameters
    ----------
    capacity : int or None
        Expected row count.  When given, columns are preallocated and filled in place, so the
        peak memory is one copy of the data (grows by doubling if the hint was short).
    """

    def __init__(self, capacity: int | None = None):
        self.capacity = int(capacity) if capacity else 0
        self._chunks: dict[str, list[np.ndarray]] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self.n = 0

    def append(self, **columns: np.ndarray) -> None:
        """Add rows; every column has the same length and the same names each call."""
        m = len(next(iter(columns.values())))
        if m == 0:
            return
        if self.capacity:
            if not self._arrays:
                self._arrays = {k: np.empty((self.capacity,) + v.shape[1:], v.dtype) for k, v in columns.items()}
            if self.n + m > len(next(iter(self._arrays.values()))):
                size = max(self.n + m, 2 * len(next(iter(self._arrays.values()))))
                for k, arr in self._arrays.items():
                    grown = np.empty((size,) + arr.shape[1:], arr.dtype)
                    grown[: self.n] = arr[: self.n]
                    self._arrays[k] = grown
            for k, v in columns.items():
                arr = self._arrays[k]
                if not np.can_cast(v.dtype, arr.dtype, "safe"):  # e.g. longer string ids than the first batch's
                    wider = np.empty(arr.shape, np.result_type(arr.dtype, v.dtype))
                    wider[: self.n] = arr[: self.n]
                    self._arrays[k] = arr = wider
                arr[self.n : self.n + m] = v
        else:
            for k, v in columns.items():
                self._chunks.setdefault(k, []).append(np.ascontiguousarray(v))
        self.n += m

    def finish(self, empty: dict[str, tuple[tuple[int, ...], Any]]) -> dict[str, np.ndarray]:
        """Return the columns; ``empty`` gives ``name -> (row shape, dtype)`` for zero rows."""
        if self.n == 0:
            return {k: np.empty((0,) + shape, dtype) for k, (shape, dtype) in empty.items()}
        if self.capacity:
            out = {k: v[: self.n] for k, v in self._arrays.items()}
            self._arrays = {}
            return out
        out = {}
        for k in list(self._chunks):
            chunks = self._chunks.pop(k)
            out[k] = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return out
