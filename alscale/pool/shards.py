"""Shard planning: split a pool's row groups into contiguous shards of near-equal rows."""

from __future__ import annotations

from dataclasses import dataclass

from alscale.pool.files import PoolFiles

__all__ = ["Shard", "plan_shards"]


@dataclass(frozen=True)
class Shard:
    """A contiguous run of row groups, read by one actor.

    Attributes
    ----------
    index : int
    pieces : tuple of (path, row_group, rows)
    """

    index: int
    pieces: tuple[tuple[str, int, int], ...]

    @property
    def rows(self) -> int:
        return sum(p[2] for p in self.pieces)

    def describe(self) -> list[dict]:
        return [{"path": p, "row_group": g, "rows": r} for p, g, r in self.pieces]


def plan_shards(pool: PoolFiles, n_shards: int) -> list[Shard]:
    """Cut the pool's row groups, in file order, into at most ``n_shards`` balanced shards.

    Each cut falls at the row-group boundary nearest to an equal share of rows, so shard sizes
    differ by at most about one row group.  Empty row groups are dropped.

    Parameters
    ----------
    pool : PoolFiles
    n_shards : int
        Wanted number of shards (>= 1); fewer come back when there are fewer row groups.

    Returns
    -------
    list of Shard
    """
    pieces = [(f.path, g, rows) for f in pool.files for g, rows in enumerate(f.row_groups) if rows > 0]
    n_shards = max(1, min(int(n_shards), len(pieces)))
    total = sum(p[2] for p in pieces)
    shards: list[list[tuple[str, int, int]]] = [[] for _ in range(n_shards)]
    done = 0
    current = 0
    for i, piece in enumerate(pieces):
        remaining_pieces = len(pieces) - i
        remaining_shards = n_shards - current
        # move to the next shard when this one has its share, keeping >= 1 piece per shard
        if shards[current] and current < n_shards - 1:
            target = total * (current + 1) / n_shards
            overshoot = done + piece[2] - target
            if remaining_pieces <= remaining_shards - 1 or (overshoot > 0 and overshoot > target - done):
                current += 1
        shards[current].append(piece)
        done += piece[2]
    return [Shard(index=i, pieces=tuple(s)) for i, s in enumerate(shards) if s]
