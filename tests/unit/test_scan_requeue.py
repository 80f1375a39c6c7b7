"""The scan's bookkeeping when an actor is lost under a shard (alscale.engine.scan, without Ray)."""

from __future__ import annotations


def test_a_shard_whose_actor_is_lost_is_requeued_once_then_fails_the_run():
    """A node killed under a shard: another actor takes it. A shard that loses a second actor (it kills
    whatever runs it: out of memory) fails the run instead of going round every actor."""
    from types import SimpleNamespace

    from alscale.engine.scan import Scan, requeue_from_lost_actor

    class Actor:
        def __init__(self):
            self.started = []
            self.score_shard = SimpleNamespace(options=lambda **kw: SimpleNamespace(remote=self._remote))

        def _remote(self, shard, *args):
            self.started.append(shard.index)
            return (object(), object())

    shards = [SimpleNamespace(index=i) for i in range(3)]
    run = SimpleNamespace(settings=SimpleNamespace(k=5), strategy=SimpleNamespace(kind="topk"))
    actors = [Actor(), Actor(), Actor()]
    scan = Scan(run, shards, actors, exclude_ref=None, labeled_ref=None, queue=[])
    pending = {}
    scan.submit(actors[1], pending, shards[1])  # actor 1 busy, actor 2 idle
    assert requeue_from_lost_actor(scan, pending, actors[0], shards[0], RuntimeError("node gone"))
    assert actors[2].started == [0] and scan.queue == [] and id(actors[0]) in scan.lost
    assert not requeue_from_lost_actor(scan, pending, actors[2], shards[0], RuntimeError("gone again"))  # its second loss
    scan2 = Scan(run, shards, actors[:1], exclude_ref=None, labeled_ref=None, queue=[])
    assert not requeue_from_lost_actor(scan2, {}, actors[0], shards[2], RuntimeError("the only actor"))
