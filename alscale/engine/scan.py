"""The scan of a selection: shards handed to actors, and handed again when an actor is lost.

:class:`Scan` holds one run's bookkeeping on the driver (the shard queue, object refs, the
bounded per-shard results).  :func:`scan_shards` gives each actor a shard and the next one when
it finishes; an actor that is lost (its node gone) or stops answering (:class:`ActorWatch`) has
its shard scored on another live actor, and the first attempt to finish counts.
:func:`sample_shards` does the same for a diversity strategy's sampling pass before the scan,
and :func:`resume_finished` takes the shards a previous run checkpointed.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

from alscale.engine.errors import discard_errors, unwrap_ray_error
from alscale.engine.liveness import STALL_SECONDS, ActorWatch
from alscale.engine.worker import ShardResult
from alscale.exceptions import ClusterError, ShardError, first_line
from alscale.pool.shards import Shard

if TYPE_CHECKING:
    from alscale.engine.driver import PreparedRun

__all__ = ["Scan", "requeue_from_lost_actor", "resume_finished", "sample_shards", "scan_shards"]

logger = logging.getLogger(__name__)


@dataclass
class Scan:
    """One run's shard bookkeeping on the driver: object refs and bounded per-shard results."""

    run: PreparedRun
    shards: list[Shard]
    actors: list
    exclude_ref: Any
    labeled_ref: Any
    prepared: dict = field(default_factory=dict)
    prepared_ref: Any = None
    queue: list[Shard] = field(default_factory=list)
    placements: dict[int, Any] = field(default_factory=dict)  # shard index -> actor holding its state
    results: list[ShardResult] = field(default_factory=list)
    buckets: dict[int, list] = field(default_factory=dict)  # shard index -> refs to its keys, by hash bucket
    skipped: list[dict] = field(default_factory=list)
    lost: set[int] = field(default_factory=set)  # id() of actors that stopped answering: no more work for them
    requeued: set[int] = field(default_factory=set)  # shards put back once after their actor was lost

    @property
    def live_actors(self) -> list:
        """The actors still answering (all of them unless a node was lost)."""
        return [a for a in self.actors if id(a) not in self.lost] or self.actors

    @property
    def n_buckets(self) -> int:
        return len(self.actors)

    @property
    def diversity(self) -> bool:
        return self.run.strategy.kind == "diversity"

    def submit(self, actor, pending: dict, shard: Shard | None = None) -> None:
        """Start the next queued shard (or ``shard``) on ``actor``; record its refs in ``pending``."""
        shard = shard or self.queue.pop(0)
        options = {"num_returns": 1 + self.n_buckets}
        if self.diversity:
            refs = actor.build_state.options(**options).remote(shard, self.exclude_ref, self.labeled_ref, self.n_buckets, self.prepared_ref)
        else:
            refs = actor.score_shard.options(**options).remote(shard, self.run.settings.k, self.exclude_ref, self.labeled_ref, self.n_buckets)
        pending[refs[0]] = (actor, shard, refs[1:])

    def skip(self, shard: Shard, err: Exception) -> None:
        """Record a shard that cannot be read as skipped (``skip_bad_shards``) and take it off the queue."""
        self.skipped.append({"shard": shard.index, "pieces": shard.describe(), "error": str(err)})
        self.queue[:] = [sh for sh in self.queue if sh.index != shard.index]
        logger.warning("skipping shard %d: %s", shard.index, err)

    def rebuild(self, actor, index: int) -> None:
        """An actor restarted and lost a shard's state: re-read the shard on it."""
        logger.warning("shard %d lost its state (actor restarted); rebuilding it", index)
        shard = next(sh for sh in self.shards if sh.index == index)
        pending: dict = {}
        self.submit(actor, pending, shard)
        try:
            ray.get(next(iter(pending)))
        except Exception as exc:
            raise unwrap_ray_error(exc) from None


def resume_finished(scan: Scan) -> None:
    """Reuse the shards a previous run of the same inputs finished (its checkpoints)."""
    run = scan.run
    for index in sorted(run.checkpoints.finished()):
        loaded = run.checkpoints.load(index) if any(sh.index == index for sh in scan.queue) else None
        if loaded is not None and scan.diversity:  # the shard's state goes back onto an actor
            actor = scan.actors[run.resumed_shards % len(scan.actors)]
            try:
                ray.get(run.checkpoints.load_state(actor, index))
            except Exception as exc:
                logger.warning("state of shard %d is unreadable (%s); scoring it again", index, unwrap_ray_error(exc))
                loaded = None
            else:
                scan.placements[index] = actor
        if loaded is not None:
            scan.results.append(loaded[0])
            scan.buckets[index] = loaded[1]
            scan.queue[:] = [sh for sh in scan.queue if sh.index != index]
            run.resumed_shards += 1
    if run.resumed_shards:
        logger.info("resuming: %d of %d shards from %s", run.resumed_shards, len(scan.shards), run.checkpoints.directory)


def scan_shards(scan: Scan) -> None:
    """Give each actor a shard, and the next one when it finishes, until the queue is empty.

    Once the queue is empty, an idle actor takes over the shard of an actor that stopped
    answering (:class:`ActorWatch`): one whose node was lost, and whose restart waits for a
    CPU that the other actors hold until the scan ends.  The first attempt to finish counts.
    """
    run, s = scan.run, scan.run.settings
    pending: dict[Any, tuple[Any, Shard, list]] = {}
    for actor in scan.live_actors:  # an actor lost in the sampling pass before the scan gets no shard
        if scan.queue:
            scan.submit(actor, pending)
    bar = progress_bar(run.pool.rows, s.progress)
    rows_read = _RowsRead(scan.actors) if bar is not None else None
    watch = ActorWatch()
    finished: set[int] = set()
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            if bar is not None:
                bar.update(max(0, rows_read.poll() - bar.n))
            for ref in done:
                if ref not in pending:  # dropped below: another attempt at its shard finished first
                    continue
                actor, shard, bucket_refs = pending.pop(ref)
                if shard.index in finished:
                    continue
                try:
                    result = ray.get(ref)
                except Exception as exc:
                    err = unwrap_ray_error(exc)
                    discard_errors(bucket_refs)  # they hold the same error: no traceback printed per bucket
                    if any(other.index == shard.index for _, other, _ in pending.values()):
                        logger.warning("shard %d failed on one actor (%s); waiting for its other attempt", shard.index, err)
                        continue
                    if isinstance(exc, ray.exceptions.RayActorError) and requeue_from_lost_actor(scan, pending, actor, shard, err):
                        continue
                    if not (isinstance(err, ShardError) and s.skip_bad_shards):
                        _abandon(pending)  # the run fails: the other shards' work is not retried
                        raise err from None
                    scan.skip(shard, err)
                else:
                    finished.add(shard.index)
                    _drop_other_attempts(pending, shard.index, scan.lost)
                    scan.results.append(result)
                    scan.buckets[shard.index] = bucket_refs
                    scan.placements[shard.index] = actor
                    if run.checkpoints is not None:
                        run.checkpoints.save(result, ref, bucket_refs)
                        if scan.diversity:
                            run.checkpoints.save_state(actor, shard.index)
                if scan.queue:
                    scan.submit(actor, pending)
            if not scan.queue and pending:
                _take_over_stalled_shards(scan, pending, watch)
        if bar is not None:
            bar.update(run.pool.rows - bar.n)
    finally:
        if rows_read is not None:
            rows_read.drain()  # no query left in flight when the actors go
        if bar is not None:
            bar.close()
    scan.results.sort(key=lambda r: r.index)
    _mark_lost_actors(scan)
    if run.checkpoints is not None:
        run.checkpoints.flush(lost=scan.lost)


def _mark_lost_actors(scan: Scan) -> None:
    """Ask every actor for its progress; those that do not answer within STALL_SECONDS are lost.

    An actor lost after it finished its shards is found here, so the stages after the scan
    (the duplicate check, the diversity reduce, the checkpoint flush) never wait on it.  Live
    actors answer in milliseconds.
    """
    asked = {actor.progress.remote(): actor for actor in scan.actors if id(actor) not in scan.lost}
    if not asked:
        return
    ready, late = ray.wait(list(asked), num_returns=len(asked), timeout=STALL_SECONDS)
    failed = []
    for ref in ready:
        try:
            ray.get(ref)
        except Exception:  # noqa: BLE001  (died for good)
            failed.append(ref)
    for ref in [*late, *failed]:
        scan.lost.add(id(asked[ref]))
    if late or failed:
        logger.warning("%d actor(s) stopped answering after the scan (a lost node?); their shards' states move to the others",
                       len(late) + len(failed))


def _take_over_stalled_shards(scan: Scan, pending: dict, watch: ActorWatch) -> None:
    """Start the shard of each actor that stopped answering on an idle actor that answers."""
    idle = _idle_live_actors(scan, pending)
    if not idle:
        return
    attempts: dict[int, int] = {}
    for _, shard, _ in pending.values():
        attempts[shard.index] = attempts.get(shard.index, 0) + 1
    for actor, shard, _ in list(pending.values()):
        if not idle:
            return
        if attempts[shard.index] > 1 or id(actor) in scan.lost or not watch.stalled(actor):
            continue
        scan.lost.add(id(actor))
        helper = idle.pop(0)
        logger.warning("shard %d: its actor has not answered for %.0f s (a lost node whose actor waits for a CPU?); "
                       "scoring it on another actor", shard.index, watch.stall_seconds)
        scan.submit(helper, pending, shard)


def requeue_from_lost_actor(scan: Scan, pending: dict, actor, shard: Shard, err: BaseException) -> bool:
    """Put back the shard of an actor that was lost (its node killed: the task's retries ran out
    before Ray declared the node dead), for the live actors.

    The lost actor gets no more work, whether or not Ray restarts it later.  Returns False (the
    run fails with ``err``) when no live actor is left, or when the shard already lost an actor:
    a shard that kills every actor it runs on (out of memory) would otherwise go round them all.
    """
    scan.lost.add(id(actor))
    if shard.index in scan.requeued or all(id(a) in scan.lost for a in scan.actors):
        return False
    scan.requeued.add(shard.index)
    logger.warning("shard %d: its actor was lost (%s); scoring it on another actor", shard.index, first_line(err)[:200])
    scan.queue.insert(0, shard)
    for idle in _idle_live_actors(scan, pending):
        if not scan.queue:
            break
        scan.submit(idle, pending)
    return True


def _idle_live_actors(scan: Scan, pending: dict) -> list:
    """The actors that answer and run no task of ``pending``."""
    busy = {id(actor) for actor, _, _ in pending.values()}
    return [a for a in scan.actors if id(a) not in busy and id(a) not in scan.lost]


def _drop_other_attempts(pending: dict, index: int, lost: set[int]) -> None:
    """Forget the other attempts at shard ``index``; cancel those queued on lost actors.

    An attempt running on a live actor is left to finish (interrupting it could leave that
    actor's other shard states half-written); its result is ignored.
    """
    for ref in [r for r, (_, shard, _) in pending.items() if shard.index == index]:
        actor, _, _ = pending.pop(ref)
        if id(actor) in lost:
            _cancel({ref: None})  # best effort: its result is ignored either way


def _cancel(pending: dict) -> None:
    """Cancel the shard tasks still running (the actors are killed next; no retry should start)."""
    for ref in pending:
        try:
            ray.cancel(ref)
        except Exception:  # noqa: BLE001  (already finished or failed: nothing to cancel)
            pass


def _abandon(pending: dict) -> None:
    """Stop the shard tasks still running as the run fails, and read what their refs then hold.

    A task's error left unread would be printed by Ray as an unhandled error, once per return
    value, where the caller's own Ray outlives this run (a notebook).  What has not stopped
    within a few seconds is left to the actors' end (they are killed next).
    """
    _cancel(pending)
    refs = [r for ref, (_actor, _shard, buckets) in pending.items() for r in (ref, *buckets)]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=5.0)
    discard_errors(ready)


class _RowsRead:
    """Rows read by the actors so far, polled without ever waiting on a busy or restarting actor."""

    def __init__(self, actors: list):
        self.actors = actors
        self.counts = [0] * len(actors)
        self.asked: dict[Any, int] = {}

    def poll(self) -> int:
        if self.asked:
            ready, _ = ray.wait(list(self.asked), num_returns=len(self.asked), timeout=0)
            for ref in ready:
                i = self.asked.pop(ref)
                try:
                    self.counts[i] = max(self.counts[i], int(ray.get(ref)))
                except Exception:  # a restarting actor: its count comes back with a later poll
                    pass
        for i, actor in enumerate(self.actors):
            if i not in self.asked.values():
                self.asked[actor.progress.remote()] = i
        return sum(self.counts)

    def drain(self, timeout: float = 2.0) -> None:
        """Wait briefly for the queries in flight (each actor answers them from a spare thread)."""
        if self.asked:
            ray.wait(list(self.asked), num_returns=len(self.asked), timeout=timeout)
        self.asked.clear()


def sample_shards(scan: Scan, m: int, stream: int) -> list[tuple[dict, int]]:
    """Each queued shard's ``sample_rows(m, stream)`` from the actors, in shard order.

    A sample holds no actor state, so the shard of an actor that was lost, or that stops
    answering (a lost node whose actor waits for a CPU the others hold), is sampled on another
    live actor, as the scan does with its shards.  With ``skip_bad_shards``, a shard that
    cannot be read is recorded as skipped (and left out of the scan).
    """
    shards = list(scan.queue)
    live = [a for a in scan.actors if id(a) not in scan.lost]
    if not live:
        raise ClusterError("Every actor was lost before the sampling pass.")
    running: dict[Any, tuple[Any, Shard]] = {}

    def start(actor, shard: Shard) -> None:
        running[actor.sample_rows.remote(shard, scan.exclude_ref, m, stream)] = (actor, shard)

    for i, shard in enumerate(shards):
        start(live[i % len(live)], shard)
    parts: dict[int, tuple[dict, int] | None] = {}
    retried: set[int] = set()
    watch = ActorWatch()

    def move(actor, shard: Shard, why: str) -> bool:
        """Sample ``shard`` on another live actor; False where none is left or it moved once already."""
        scan.lost.add(id(actor))
        others = [a for a in scan.actors if id(a) not in scan.lost]
        if shard.index in retried or not others:
            return False
        retried.add(shard.index)
        busy = {id(a) for a, _ in running.values()}
        logger.warning("shard %d: %s; sampling it on another actor", shard.index, why)
        start(next((a for a in others if id(a) not in busy), others[0]), shard)
        return True

    try:
        while len(parts) < len(shards):  # the first attempt at a shard to finish counts; a lost actor's may never
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
            for ref in done:
                actor, shard = running.pop(ref)
                if shard.index in parts:  # another attempt finished first
                    continue
                try:
                    parts[shard.index] = ray.get(ref)
                except Exception as exc:
                    err = unwrap_ray_error(exc)
                    if isinstance(exc, ray.exceptions.RayActorError) and move(actor, shard, f"its actor was lost ({first_line(err)[:200]})"):
                        continue
                    if not (isinstance(err, ShardError) and scan.run.settings.skip_bad_shards):
                        raise err from None
                    scan.skip(shard, err)
                    parts[shard.index] = None
            for actor, shard in list(running.values()):
                if shard.index in parts or shard.index in retried:
                    continue
                if id(actor) in scan.lost or watch.stalled(actor):  # lost: another of its shards found it so
                    move(actor, shard, f"its actor has not answered for {watch.stall_seconds:.0f} s (a lost node whose actor waits for a CPU?)")
    finally:
        if running:  # a failure: what still runs is of no use, and its errors are read, not printed as unhandled
            _abandon({ref: (actor, shard, []) for ref, (actor, shard) in running.items()})
    return [parts[shard.index] for shard in shards if parts.get(shard.index) is not None]


def progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, desc="scoring", dynamic_ncols=True)
