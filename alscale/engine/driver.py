"""The selection driver: plan shards, place them on actors, reduce, write the manifest.

The driver reads Parquet footers and model metadata, never pool rows.  Shard actors stream
their row groups, score them and send back bounded results (a top-K, or a diversity
strategy's candidates); the driver merges them exactly and writes the batch manifest.

Stages (each timed in the manifest): ``plan`` (footers, model contract, id files), ``startup``
(Ray and actors), ``prepare`` (a diversity strategy's pass before the scan, such as
Cluster-Margin's centroids), ``score`` (the scan), ``check_ids`` (distributed duplicate-id
check), ``reduce`` (merge / diversity selection).  The manifest's own write is not timed in it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from alscale.arraycache import ArrayCache
from alscale.config import SelectSettings
from alscale.engine.checkpoint import open_checkpoints
from alscale.engine.errors import discard_errors, unwrap_ray_error
from alscale.engine.liveness import STALL_SECONDS, ActorWatch
from alscale.engine.raygroup import RayShardGroup
from alscale.engine.record import batch_table, manifest_data
from alscale.engine.runtime import ray_session
from alscale.engine.storage import split_location
from alscale.engine.worker import ScoringJob, ShardResult, ShardWorker
from alscale.exceptions import (
    AlscaleError,
    ClusterError,
    ConfigError,
    DuplicateIdError,
    EngineError,
    InvalidFeaturesError,
    ModelContractError,
    OutputError,
    PoolExhaustedError,
    PoolSchemaError,
    ShardError,
    StrategyError,
    first_line,
)
from alscale.manifest import BATCH_FILE, Manifest, check_output_free, write_manifest
from alscale.model.contract import ModelContract, expand_model_dirs, inspect_model
from alscale.model.session import check_committee
from alscale.pool.features import FeatureSpec, detect_features
from alscale.pool.files import PoolFiles, reads_path, resolve_pool
from alscale.pool.idfiles import read_id_keys
from alscale.pool.shards import Shard, plan_shards
from alscale.reduce._params import user_params
from alscale.reduce.topk import TopK
from alscale.strategies import Strategy, get_strategy

__all__ = ["PreparedRun", "prepare_run", "run_selection"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedRun:
    """Everything known before any row is read."""

    settings: SelectSettings
    strategy: Strategy
    pool: PoolFiles
    feature_spec: FeatureSpec
    contracts: tuple[ModelContract, ...]
    exclude_keys: np.ndarray
    labeled_keys: np.ndarray
    int_ids: bool
    timings: dict[str, float] = field(default_factory=dict)
    checkpoints: Any = None  # engine.checkpoint.ShardCheckpoints of this run, if any
    resumed_shards: int = 0

    def job(self) -> ScoringJob:
        s = self.settings
        params = dict(s.strategy_params)
        return ScoringJob(
            filesystem_uri=self.pool.filesystem_uri,
            feature_spec=self.feature_spec,
            id_column=s.id_column,
            contracts=self.contracts,
            strategy=self.strategy,  # the object: a strategy registered only in this process reaches the actors
            strategy_params=params,
            seed=s.seed,
            batch_size=s.batch_size,
            threads=s.threads,
            on_invalid=s.on_invalid,
        )


def prepare_run(settings: SelectSettings) -> PreparedRun:
    """Check every input that can be checked without reading rows.

    Raises
    ------
    AlscaleError
        Any bad input: output exists, unknown strategy, missing pool, no id column, model
        contract, width mismatch, unreadable id files, k larger than the pool.
    """
    t0 = time.perf_counter()
    s = settings
    if s.out:
        check_output_free(s.out, s.force)
    if s.checkpoint_dir:
        try:
            split_location(s.checkpoint_dir)
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise OutputError(f"Cannot open checkpoint location {s.checkpoint_dir!r}: {first_line(exc)}") from None
    strategy = get_strategy(s.strategy)
    # unknown or ill-typed parameters fail here, before Ray; the checked values (ints as int, floats
    # as float) are what the actors use and what the manifest records
    s = dataclasses.replace(s, strategy_params=user_params(strategy.name, strategy.defaults, s.strategy_params))
    models = expand_model_dirs(s.model)
    if strategy.needs_committee and len(models) < 2:
        raise StrategyError(f"Strategy {s.strategy!r} needs a committee: give >= 2 models (a list of models, or repeat --model). Got {len(models)}.")
    pool = resolve_pool(s.pool)
    if s.out and reads_path(s.pool, os.path.join(s.out, BATCH_FILE)):
        raise OutputError(f"Output {str(s.out)!r} is inside the pool {s.pool!r}: its {BATCH_FILE} would be read as pool rows "
                          "by every later run over that pool. Choose an output outside the pool.")
    if s.id_column not in pool.schema.names:
        raise PoolSchemaError(f"The pool has no id column {s.id_column!r}; its columns are {pool.schema.names}.")
    id_type = pool.schema.field(s.id_column).type
    if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
        raise PoolSchemaError(f"The id column {s.id_column!r} must be int64 or string. Got {id_type}.")
    spec = detect_features(pool.schema, s.id_column, s.features)
    contracts = tuple(inspect_model(m, probs_output=s.probs_output, embedding_output=s.embedding_output) for m in models)
    check_committee(contracts)
    width = contracts[0].input_width
    if width is not None and spec.width > 0 and width != spec.width:
        raise ModelContractError(
            f"Feature width does not match the model: column(s) {list(spec.columns)} give {spec.width} features per row, "
            f"model input {contracts[0].input_name!r} takes {width}."
        )
    if strategy.needs_embedding and contracts[0].embedding_output is None:
        outputs = [o[0] for o in contracts[0].outputs]
        raise StrategyError(
            f"Strategy {s.strategy!r} needs an embedding output; model {contracts[0].path!r} has none among {outputs} "
            "(name one with embedding_output=, --embedding-output)."
        )
    if s.k > pool.rows and not (s.exclude or s.labeled):  # with exclusions, the scan gives the exact count
        raise PoolExhaustedError(pool.rows, s.k)
    int_ids = pa.types.is_integer(id_type)
    labeled_keys = read_id_keys(s.labeled, s.id_column, as_int=int_ids)
    exclude_keys = np.union1d(read_id_keys(s.exclude, s.id_column, as_int=int_ids), labeled_keys)
    run = PreparedRun(s, strategy, pool, spec, contracts, exclude_keys, labeled_keys, int_ids)
    run.timings["plan"] = time.perf_counter() - t0
    return run


def run_selection(settings: SelectSettings) -> Manifest:
    """Run one selection end to end and return (and, with ``settings.out``, write) the manifest."""
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run = prepare_run(settings)
    with ray_session(settings.address, num_cpus=_private_ray_cpus(settings)):
        try:
            selected, results, info, skipped = _execute(run)
        except AlscaleError as exc:
            if run.checkpoints is not None and _is_input_error(exc):
                run.checkpoints.remove()  # the same inputs fail the same way: nothing worth resuming
            raise
    batch = batch_table(run, selected)
    data = manifest_data(run, results, info, skipped, created)
    # written once, atomically; the write itself is the one stage manifest.json cannot time
    manifest = Manifest(path=None, data=data, batch=batch) if not settings.out else _write(run, batch, data)
    if run.checkpoints is not None and not settings.keep_checkpoints:  # the result is safe (or returned): drop the checkpoints
        run.checkpoints.remove()
    return manifest


def _write(run: PreparedRun, batch, data: dict) -> Manifest:
    """``write_manifest`` at ``run.settings.out``; where another run wrote that output meanwhile, say so and where this run's work is.

    The output was free when the run started (:func:`prepare_run`), so an output that exists now
    came from a run beside this one (the same command started twice).  This run's checkpoints
    stay: ``--force`` then replaces that output from them, without scoring again.
    """
    s = run.settings
    try:
        return write_manifest(s.out, batch, data, force=s.force)
    except OutputError as exc:
        if s.force or not os.path.exists(s.out) or run.checkpoints is None:
            raise
        raise OutputError(f"Output directory {str(s.out)!r} was written by another run while this one ran. This run's "
                          f"checkpoints stay in {run.checkpoints.directory!r}: run it again with --force to replace that "
                          "output from them (nothing is scored again), or delete them.") from exc


def _private_ray_cpus(s: SelectSettings) -> int | None:
    """CPUs for a private local Ray: enough for every actor asked for (each takes one), so more
    actors than cores share the cores instead of waiting forever for a CPU."""
    cores = os.cpu_count() or 1
    return s.actors if s.actors and s.actors > cores else None


def _is_input_error(exc: AlscaleError) -> bool:
    """Bad input (data, model, settings): unlike a lost actor, a rerun fails the same way."""
    return isinstance(exc, ShardError) or not isinstance(exc, EngineError)


# -- execution on actors ---------------------------------------------------------------------


def _execute(run: PreparedRun) -> tuple[dict, list[ShardResult], dict, list[dict]]:
    s = run.settings
    t0 = time.perf_counter()
    cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
    n_actors = s.actors or cpus
    shards = plan_shards(run.pool, n_actors)
    n_actors = min(n_actors, len(shards))
    if n_actors > cpus and _started_in_this_process():
        raise ConfigError(f"{n_actors} actors need a CPU each; the Ray this process started has {cpus} and no autoscaler to add more: "
                          f"ask for {cpus} actors or fewer, or start Ray with more (ray.init(num_cpus=...)).")
    # a second thread per actor, only for the progress query, so it is answered mid-shard
    worker_cls = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3, concurrency_groups={"progress": 1})(ShardWorker)
    actors = [worker_cls.remote(run.job()) for _ in range(n_actors)]
    try:  # the actors are killed however this ends: an error at start-up or Ctrl-C while waiting too
        try:
            _wait_for_actors(actors, cpus)
        except Exception as exc:
            raise unwrap_ray_error(exc) from None
        run.timings["startup"] = time.perf_counter() - t0
        return _scan_and_reduce(run, shards, actors)
    finally:
        for actor in actors:
            ray.kill(actor)


def _started_in_this_process() -> bool:
    """Whether the Ray this driver uses is one ``ray.init`` started here (no autoscaler: its CPUs are all it has)."""
    try:
        node = ray._private.worker._global_node
        return bool(node is not None and node.ray_init_cluster)
    except AttributeError:  # another Ray version's internals: assume a cluster that may grow
        return False


def _wait_for_actors(actors: list, cpus: int, warn_after: float = 30.0) -> None:
    """Wait until every actor is up with its model loaded, saying why when that takes long.

    An existing cluster with fewer CPUs than actors places the rest only when its autoscaler
    adds nodes, so this waits rather than fails, and tells the user what it is waiting for.
    """
    pending = [a.ready.remote() for a in actors]
    waited = 0.0
    while pending:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=warn_after)
        ray.get(ready)  # raises an actor's start-up error (a model this node cannot load, ...)
        waited += warn_after
        if pending:
            logger.warning("%d of %d actors are up after %.0f s; each takes one CPU and the cluster has %d: waiting for "
                           "more CPUs (an autoscaler adding nodes), or ask for fewer actors", len(actors) - len(pending),
                           len(actors), waited, cpus)


@dataclass
class _Scan:
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


def _scan_and_reduce(run: PreparedRun, shards: list[Shard], actors: list) -> tuple[dict, list[ShardResult], dict, list[dict]]:
    scan = _Scan(run, shards, actors, ray.put(run.exclude_keys), ray.put(run.labeled_keys), queue=list(shards))
    t0 = time.perf_counter()
    if scan.diversity and run.strategy.prepare is not None:  # e.g. Cluster-Margin's centroids
        scan.prepared = _prepare_strategy(scan)
        run.timings["prepare"] = time.perf_counter() - t0
    scan.prepared_ref = ray.put(scan.prepared)

    t0 = time.perf_counter()
    run.checkpoints = open_checkpoints(run, shards, scan.n_buckets)
    if run.checkpoints is not None:
        _resume_finished(scan)
    _scan_shards(scan)
    run.timings["score"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if not _ids_provably_unique(scan.results):
        _check_duplicate_ids(scan)
    run.timings["check_ids"] = time.perf_counter() - t0

    _check_counts(run, scan.results)
    t0 = time.perf_counter()
    selected, info = _reduce_diversity(scan) if scan.diversity else (_reduce_top_k(run, scan.results), {})
    run.timings["reduce"] = time.perf_counter() - t0
    return selected, scan.results, info, scan.skipped


def _resume_finished(scan: _Scan) -> None:
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


def _scan_shards(scan: _Scan) -> None:
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
    bar = _progress_bar(run.pool.rows, s.progress)
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
                    if isinstance(exc, ray.exceptions.RayActorError) and _requeue_from_lost_actor(scan, pending, actor, shard, err):
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


def _mark_lost_actors(scan: _Scan) -> None:
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


def _take_over_stalled_shards(scan: _Scan, pending: dict, watch: ActorWatch) -> None:
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


def _requeue_from_lost_actor(scan: _Scan, pending: dict, actor, shard: Shard, err: BaseException) -> bool:
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


def _idle_live_actors(scan: _Scan, pending: dict) -> list:
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


def _reduce_top_k(run: PreparedRun, results: list[ShardResult]) -> dict[str, np.ndarray]:
    """Merge the shards' top-K exactly (score descending, id ascending)."""
    top = TopK(run.settings.k)
    for r in results:
        if r.top is not None:
            top.add(r.top["score"], r.top["id"], predicted_index=r.top["predicted_index"], confidence=r.top["confidence"])
    return top.result()


def _reduce_diversity(scan: _Scan) -> tuple[dict[str, np.ndarray], dict]:
    """Run the strategy's selection over the shard states held by the actors."""
    run = scan.run
    group = RayShardGroup([(scan.placements[r.index], r.index) for r in scan.results], rebuild=scan.rebuild, spares=scan.live_actors,
                          lost=scan.lost)
    params = {**run.settings.strategy_params, **scan.prepared}  # a prepared strategy's cache was used in prepare
    try:
        selection = run.strategy.select(group, run.settings.k, run.settings.seed, params)
    except Exception as exc:
        raise unwrap_ray_error(exc) from None
    info = dict(selection.info)
    if group.rebuilds:
        info["shard_states_rebuilt"] = group.rebuilds
    return {name: np.asarray(col) for name, col in selection.columns.items()}, info


def _prepare_params(run: PreparedRun) -> dict:
    """The strategy's parameters for its ``prepare``, with the cache it may keep results in (beside the output)."""
    params = dict(run.settings.strategy_params)
    directory = _cache_dir(run.settings)
    params.setdefault("cache", ArrayCache(directory, _cache_key(run)) if directory else None)
    return params


def _prepare_strategy(scan: _Scan) -> dict:
    """Run the strategy's ``prepare`` with a sampling pass over every shard on the actors.

    With ``skip_bad_shards``, a shard that cannot be read is recorded as skipped here and left
    out of the scan, as the scan itself would.
    """
    run = scan.run

    def sample_rows(m: int, stream: int) -> tuple[dict, int]:
        parts = _sample_shards(scan, m, stream)
        rows = [p for p, _ in parts if p]
        total = sum(count for _, count in parts)
        if not rows:
            return {"u": np.empty(0), "key": np.empty(0, np.uint64), "embedding": np.empty((0, 0), np.float32)}, total
        merged = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
        keep = np.lexsort((merged["key"], merged["u"]))[:m]  # the m smallest (u, key) of the pool
        return {name: col[keep] for name, col in merged.items()}, total

    return run.strategy.prepare(sample_rows, run.settings.k, run.settings.seed, _prepare_params(run))


def _sample_shards(scan: _Scan, m: int, stream: int) -> list[tuple[dict, int]]:
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


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, desc="scoring", dynamic_ncols=True)


def _ids_provably_unique(results: list[ShardResult]) -> bool:
    """True when every shard's keys strictly increase and the shards' key ranges are disjoint.

    The common case (ids written in increasing order) then needs no key exchange at all.
    """
    ranges = [r.key_range for r in results if r.rows_total]
    if any(rng is None for rng in ranges):
        return False
    ranges = [tuple(rng) for rng in ranges]  # a resumed shard's range comes back from JSON as a list
    ranges.sort()
    return all(b[0] > a[1] for a, b in zip(ranges[:-1], ranges[1:]))


def _check_duplicate_ids(scan: _Scan) -> None:
    """Each actor checks one hash bucket of every shard's keys; the driver sees only verdicts.

    A shard whose keys strictly increase sent no keys (see :class:`KeyOrder`); an actor
    reads its id column again here, which only happens when shards' id ranges overlap.
    """
    actors, n_buckets = scan.live_actors, scan.n_buckets
    by_index = {shard.index: shard for shard in scan.shards}
    buckets = []
    for i, result in enumerate(scan.results):
        if not result.rows_total:
            continue
        refs = scan.buckets[result.index]
        if not result.keeps_keys:  # its keys were not sent: read them again
            reread = actors[i % len(actors)].key_buckets.options(num_returns=n_buckets).remote(by_index[result.index], n_buckets)
            refs = list(reread) if n_buckets > 1 else [reread]
        buckets.append(refs)
    if not buckets:
        return
    refs = [actors[b % len(actors)].find_duplicate.remote(*[shard_buckets[b] for shard_buckets in buckets]) for b in range(n_buckets)]
    try:
        found = [k for k in ray.get(refs) if k is not None]
    except Exception as exc:
        raise unwrap_ray_error(exc) from None
    if not found:
        return
    key, ids = found[0], []
    for shard in scan.shards:
        ids += ray.get(actors[0].lookup_ids.remote(shard, key))
        if len(ids) >= 2:
            break
    raise duplicate_id_error(ids)


def duplicate_id_error(ids: list) -> DuplicateIdError:
    """The error for the ids found under one key: one id twice, or two string ids whose 64-bit hashes meet."""
    if len(set(ids)) > 1:  # string ids are matched by a 64-bit hash: about n**2 / 2**65 pairs of n ids collide
        return DuplicateIdError(f"Ids {ids[0]!r} and {ids[1]!r} have the same 64-bit key (a hash collision of string ids), "
                                f"so alscale cannot tell them apart. Rename one of them.")
    return DuplicateIdError(f"Id {ids[0] if ids else None!r} appears more than once in the pool; ids must be unique.")


def _check_counts(run: PreparedRun, results: list[ShardResult]) -> None:
    s = run.settings
    invalid = sum(r.rows_invalid for r in results)
    if invalid and s.on_invalid == "error":
        example = next(r.invalid_example for r in results if r.invalid_example is not None)
        raise InvalidFeaturesError(
            f"{invalid} row(s) hold NaN, inf or null features (e.g. id {example!r}); fix the pool or set on_invalid='skip' (--on-invalid skip) to skip and count them."
        )
    available = sum(r.rows_scored for r in results)
    if available < s.k:
        raise PoolExhaustedError(available, s.k)


def _cache_dir(s: SelectSettings) -> str | None:
    if not s.out:
        return None
    from pathlib import Path

    return str(Path(s.out).resolve().parent / ".alscale-cache")


def _cache_key(run: PreparedRun) -> str:
    """What a strategy's cached results depend on beyond its own settings: the models and the
    outputs read from them, the pool and the columns fed to them, and the rows left out
    (Cluster-Margin's centroids are fit on a sample of the selectable rows' embeddings)."""
    import hashlib

    left_out = [hashlib.sha256(keys.tobytes()).hexdigest() for keys in (run.exclude_keys, run.labeled_keys)]  # sorted, unique
    outputs = [f"{c.sha256}:{c.class_output}:{c.output_kind}:{c.embedding_output}" for c in run.contracts]
    features = f"{run.feature_spec.kind}:{','.join(run.feature_spec.columns)}"
    parts = outputs + [run.pool.fingerprint()["sha256"], features] + left_out
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
