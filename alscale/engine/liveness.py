"""Telling a busy shard actor from one that is gone.

A shard actor answers :meth:`ShardWorker.progress` from a spare thread (its own concurrency
group), so even in the middle of a long shard it answers within milliseconds.  An actor whose
node was lost answers nothing: Ray restarts it only when a CPU is free, and on a cluster whose
every CPU is held by the other actors that never happens.  The driver then gives the actor's
work to an idle one instead of waiting forever.
"""

from __future__ import annotations

import time
from typing import Any

import ray

__all__ = ["STALL_SECONDS", "ActorWatch"]

#: How long an actor may leave a progress query unanswered before it counts as gone.
STALL_SECONDS = 10.0


class ActorWatch:
    """Keep one progress query in flight per watched actor and say which ones stopped answering.

    Parameters
    ----------
    stall_seconds : float
        An actor whose query has been unanswered this long is stalled.
    """

    def __init__(self, stall_seconds: float = STALL_SECONDS):
        self.stall_seconds = stall_seconds
        self._asked: dict[int, tuple[Any, float]] = {}  # id(actor handle) -> (query ref, sent at)

    def stalled(self, actor: Any) -> bool:
        """Whether ``actor`` has left a query unanswered for ``stall_seconds``, or died for good.

        Each call that finds the previous query answered sends the next one, so a caller that
        asks every fraction of a second learns of a lost actor about ``stall_seconds`` after.
        """
        now = time.monotonic()
        entry = self._asked.get(id(actor))
        if entry is not None:
            ref, sent = entry
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                return now - sent > self.stall_seconds
            try:
                ray.get(ref)
            except Exception:  # noqa: BLE001  (the actor died for good: its calls will never finish)
                return True
        self._asked[id(actor)] = (actor.progress.remote(), now)
        return False
