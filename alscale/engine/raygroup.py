"""A :class:`alscale.reduce.shardgroup.ShardGroup` over shard states held by Ray actors.

Shard states live in actor memory.  When an actor dies, Ray restarts it empty and retries the
call, which then reports :class:`ShardStateLostError`; the group rebuilds that shard's state on
the restarted actor (re-reading the shard) and replays every earlier call of the selection.
The calls are deterministic (their randomness comes from (seed, round, id)), so the replayed
state is the one that was lost and the selection is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

from alscale.engine.errors import unwrap_ray_error
from alscale.exceptions import ClusterError, ShardStateLostError

__all__ = ["RayShardGroup"]


class RayShardGroup:
    """Call a method on every shard's state, each state living on the actor that built it.

    Parameters
    ----------
    placements : list of (actor handle, shard index)
        In shard order.
    rebuild : callable, optional
        ``rebuild(actor, shard_index)`` puts the shard's freshly built state back on ``actor``.
    max_rebuilds : int
        Rebuilds allowed per call before giving up.
    """

    def __init__(self, placements: list[tuple[Any, int]], rebuild: Callable[[Any, int], None] | None = None, max_rebuilds: int = 3):
        self.placements = list(placements)
        self.rebuild = rebuild
        self.max_rebuilds = max_rebuilds
        self.history: list[tuple[str, tuple, dict]] = []  # every call so far, for replay
        self.rebuilds = 0

    def __len__(self) -> int:
        return len(self.placements)

    def map(self, method: str, *args: Any, **kwargs: Any) -> list:
        """``state.<method>(*args, **kwargs)`` on every shard, in parallel; results in shard order."""
        # large arguments (broadcast centers) go through the object store once
        put_args = tuple(ray.put(a) if _is_large(a) else a for a in args)
        refs = [actor.call.remote(index, method, *put_args, **kwargs) for actor, index in self.placements]
        results = [self._result(actor, index, ref, method, put_args, kwargs) for (actor, index), ref in zip(self.placements, refs)]
        self.history.append((method, put_args, kwargs))
        return results

    def _result(self, actor: Any, index: int, ref: Any, method: str, args: tuple, kwargs: dict) -> Any:
        for _ in range(self.max_rebuilds + 1):
            try:
                return ray.get(ref)
            except Exception as exc:  # Ray wraps our errors; give back the original
                err = unwrap_ray_error(exc)
                if not isinstance(err, ShardStateLostError) or self.rebuild is None:
                    raise err from None
            self.rebuilds += 1
            self.rebuild(actor, index)
            for past_method, past_args, past_kwargs in self.history:
                ray.get(actor.call.remote(index, past_method, *past_args, **past_kwargs))
            ref = actor.call.remote(index, method, *args, **kwargs)
        raise ClusterError(f"Shard {index}'s state was lost {self.max_rebuilds + 1} times in one call; giving up.")


def _is_large(value: Any) -> bool:
    nbytes = getattr(value, "nbytes", 0)
    return isinstance(nbytes, int) and nbytes > 1 << 20
