"""A :class:`alscale.reduce.shardgroup.ShardGroup` over shard states held by Ray actors.

Shard states live in actor memory.  When an actor dies, Ray restarts it empty and retries the
call, which then reports :class:`ShardStateLostError`; the group rebuilds that shard's state on
the restarted actor (re-reading the shard) and replays every earlier call of the selection.
The calls are deterministic (their randomness comes from (seed, round, id)), so the replayed
state is the one that was lost and the selection is unchanged.

An actor whose node was lost may never restart (every CPU left is held by the other actors).
When it stops answering (:class:`~alscale.engine.liveness.ActorWatch`), its shards' states are
rebuilt on the other actors instead, the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

from alscale.engine.errors import unwrap_ray_error
from alscale.engine.liveness import ActorWatch
from alscale.exceptions import ClusterError, ShardStateLostError

__all__ = ["RayShardGroup"]


class RayShardGroup:
    """Call a method on every shard's state, each state living on the actor that built it.

    Parameters
    ----------
    placements : list of (actor handle, shard index)
        In shard order.
    rebuild : callable, optional
        ``rebuild(actor, shard_index)`` puts the shard's freshly built state on ``actor``.
    max_rebuilds : int
        Rebuilds allowed per call before giving up.
    spares : list of actor handles, optional
        Actors that may take over the shards of an actor that stops answering (with
        ``rebuild``); without them a call waits for the actor however long it takes.
    watch : ActorWatch, optional
    lost : set of int
        id() of actors already known to be gone: their shards move at the first call.
    """

    def __init__(self, placements: list[tuple[Any, int]], rebuild: Callable[[Any, int], None] | None = None, max_rebuilds: int = 3,
                 spares: list | None = None, watch: ActorWatch | None = None, lost: set[int] = frozenset()):
        self.placements = list(placements)
        self.rebuild = rebuild
        self.max_rebuilds = max_rebuilds
        self.spares = list(spares or [])
        self.watch = watch or ActorWatch()
        self.lost: set[int] = set(lost)  # id() of actors that stopped answering
        self.history: list[tuple[str, tuple, dict]] = []  # every call so far, for replay
        self.rebuilds = 0

    def __len__(self) -> int:
        return len(self.placements)

    def map(self, method: str, *args: Any, **kwargs: Any) -> list:
        """``state.<method>(*args, **kwargs)`` on every shard, in parallel; results in shard order."""
        # large arguments (broadcast centers) go through the object store once
        put_args = tuple(ray.put(a) if _is_large(a) else a for a in args)
        refs = [actor.call.remote(index, method, *put_args, **kwargs) for actor, index in self.placements]
        results = [self._result(position, ref, method, put_args, kwargs) for position, ref in enumerate(refs)]
        self.history.append((method, put_args, kwargs))
        return results

    def _result(self, position: int, ref: Any, method: str, args: tuple, kwargs: dict) -> Any:
        for _ in range(self.max_rebuilds + 1):
            actor, index = self.placements[position]
            try:
                return self._get(actor, ref)
            except _Stalled:
                self.lost.add(id(actor))
                target = self._spare()
                if target is None:
                    raise ClusterError(f"The actor holding shard {index}'s state stopped answering and no other actor is left.") from None
            except Exception as exc:  # Ray wraps our errors; give back the original
                err = unwrap_ray_error(exc)
                if not isinstance(err, ShardStateLostError) or self.rebuild is None:
                    raise err from None
                target = actor
            self.rebuilds += 1
            self.rebuild(target, index)
            for past_method, past_args, past_kwargs in self.history:
                ray.get(target.call.remote(index, past_method, *past_args, **past_kwargs))
            self.placements[position] = (target, index)
            ref = target.call.remote(index, method, *args, **kwargs)
        raise ClusterError(f"Shard {index}'s state was lost {self.max_rebuilds + 1} times in one call; giving up.")

    def _get(self, actor: Any, ref: Any) -> Any:
        """``ray.get(ref)``, or :class:`_Stalled` once ``actor`` stops answering (when spares can take over)."""
        if not self.spares or self.rebuild is None:
            return ray.get(ref)
        if id(actor) in self.lost:  # known to be gone: do not wait for it
            raise _Stalled
        while True:
            ready, _ = ray.wait([ref], timeout=0.5)
            if ready:
                return ray.get(ref)
            if self.watch.stalled(actor):
                raise _Stalled

    def _spare(self) -> Any:
        """The answering spare actor holding the fewest shard states, or None."""
        live = [a for a in self.spares if id(a) not in self.lost]
        if not live:
            return None
        held = {id(a): 0 for a in live}
        for actor, _ in self.placements:
            if id(actor) in held:
                held[id(actor)] += 1
        return min(live, key=lambda a: held[id(a)])


class _Stalled(Exception):
    """The actor a call waits on stopped answering."""


def _is_large(value: Any) -> bool:
    nbytes = getattr(value, "nbytes", 0)
    return isinstance(nbytes, int) and nbytes > 1 << 20
