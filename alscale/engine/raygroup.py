"""A :class:`alscale.reduce.shardgroup.ShardGroup` over shard states held by Ray actors."""

from __future__ import annotations

from typing import Any

import ray

from alscale.engine.errors import unwrap_ray_error

__all__ = ["RayShardGroup"]


class RayShardGroup:
    """Call a method on every shard's state, each state living on the actor that built it.

    Parameters
    ----------
    placements : list of (actor handle, shard index)
        In shard order.
    """

    def __init__(self, placements: list[tuple[Any, int]]):
        self.placements = list(placements)

    def __len__(self) -> int:
        return len(self.placements)

    def map(self, method: str, *args: Any, **kwargs: Any) -> list:
        """``state.<method>(*args, **kwargs)`` on every shard, in parallel; results in shard order."""
        # large arguments (broadcast centers) go through the object store once
        put_args = [ray.put(a) if _is_large(a) else a for a in args]
        refs = [actor.call.remote(index, method, *put_args, **kwargs) for actor, index in self.placements]
        try:
            return ray.get(refs)
        except Exception as exc:  # Ray wraps our errors; give back the original
            raise unwrap_ray_error(exc) from None


def _is_large(value: Any) -> bool:
    nbytes = getattr(value, "nbytes", 0)
    return isinstance(nbytes, int) and nbytes > 1 << 20
