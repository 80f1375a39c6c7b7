"""Shard planning: cut a pool's rows, in file order, into contiguous shards of equal size.

A shard is a run of *pieces*: whole row groups, or a row range of one where a cut falls inside
it.  Cutting inside row groups keeps every actor busy when a pool has few, large row groups
(a 3M-row file written with 1M-row groups feeds 8 actors, not 3), and makes shards equal to
the row.  Where the page reader applies (:mod:`alscale.pool.pages`), reading part of a row group
costs nothing extra; through Arrow, the rows before a piece's first are decoded and dropped,
which costs less than the imbalance a whole-row-group cut leaves (that costs inference too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from alscale.pool.files import PoolFiles

__all__ = ["Piece", "Shard", "plan_shards"]


class Piece(NamedTuple):
    """Rows ``first`` to ``first + rows`` of one row group.

    Attributes
    ----------
    path : str
    row_group : int
    rows : int
    first : int
        The piece's first row, counted from the start of its row group.
    """

    path: str
    row_group: int
    rows: int
    first: int = 0

    @property
    def stop(self) -> int:
        """One past the piece's last row, counted from the start of its row group."""
        return self.first + self.rows


@dataclass(frozen=True)
class Shard:
    """A contiguous run of pieces, read by one actor.

    Attributes
    ----------
    index : int
    pieces : tuple of Piece
    """

    index: int
    pieces: tuple[Piece, ...]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    def describe(self) -> list[dict]:
        return [{"path": p.path, "row_group": p.row_group, "first": p.first, "rows": p.rows} for p in self.pieces]


def plan_shards(pool: PoolFiles, n_shards: int) -> list[Shard]:
    """Cut the pool's rows, in file order, into ``n_shards`` shards whose sizes differ by at most one row.

    Shard ``i`` holds the pool's rows ``total * i // n`` to ``total * (i + 1) // n``; a cut that
    falls inside a row group splits it into two pieces.  Empty row groups are dropped.

    Parameters
    ----------
    pool : PoolFiles
    n_shards : int
        Wanted number of shards (>= 1); fewer come back when the pool has fewer rows.

    Returns
    -------
    list of Shard
    """
    groups = [(f.path, g, rows) for f in pool.files for g, rows in enumerate(f.row_groups) if rows > 0]
    total = sum(rows for _, _, rows in groups)
    n_shards = max(1, min(int(n_shards), total))
    cuts = [total * (i + 1) // n_shards for i in range(n_shards)]  # pool row at which shard i ends
    shards: list[list[Piece]] = [[] for _ in range(n_shards)]
    current = 0
    start = 0  # pool row of the current row group's first row
    for path, group, rows in groups:
        first = 0
        while first < rows:
            stop = min(rows, cuts[current] - start)
            shards[current].append(Piece(path, group, stop - first, first))
            first = stop
            if start + stop == cuts[current] and current < n_shards - 1:
                current += 1
        start += rows
    return [Shard(index=i, pieces=tuple(s)) for i, s in enumerate(shards) if s]
