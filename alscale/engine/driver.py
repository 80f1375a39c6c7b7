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
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from alscale.arraycache import ArrayCache
from alscale.config import SelectSettings
from alscale.engine.checkpoint import open_checkpoints
from alscale.engine.errors import unwrap_ray_error
from alscale.engine.raygroup import RayShardGroup
from alscale.engine.record import batch_table, manifest_data
from alscale.engine.runtime import ray_session
from alscale.engine.scan import Scan, resume_finished, sample_shards, scan_shards
from alscale.engine.storage import split_location
from alscale.engine.worker import ScoringJob, ShardResult, ShardWorker
from alscale.exceptions import (
    AlscaleError,
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
    if strategy.needs_embedding and len(models) > 1:  # one model's gradient or embedding space: a committee has none
        raise StrategyError(f"Strategy {s.strategy!r} works in one model's embedding space; expected one model. Got a committee of "
                            f"{len(models)} (committees are for qbc-vote and qbc-kl, or an uncertainty strategy on their mean "
                            "probabilities).")
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


def _scan_and_reduce(run: PreparedRun, shards: list[Shard], actors: list) -> tuple[dict, list[ShardResult], dict, list[dict]]:
    scan = Scan(run, shards, actors, ray.put(run.exclude_keys), ray.put(run.labeled_keys), queue=list(shards))
    t0 = time.perf_counter()
    if scan.diversity and run.strategy.prepare is not None:  # e.g. Cluster-Margin's centroids
        scan.prepared = _prepare_strategy(scan)
        run.timings["prepare"] = time.perf_counter() - t0
    scan.prepared_ref = ray.put(scan.prepared)

    t0 = time.perf_counter()
    run.checkpoints = open_checkpoints(run, shards, scan.n_buckets)
    if run.checkpoints is not None:
        resume_finished(scan)
    scan_shards(scan)
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


def _reduce_top_k(run: PreparedRun, results: list[ShardResult]) -> dict[str, np.ndarray]:
    """Merge the shards' top-K exactly (score descending, id ascending)."""
    top = TopK(run.settings.k)
    for r in results:
        if r.top is not None:
            top.add(r.top["score"], r.top["id"], predicted_index=r.top["predicted_index"], confidence=r.top["confidence"])
    return top.result()


def _reduce_diversity(scan: Scan) -> tuple[dict[str, np.ndarray], dict]:
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


def _prepare_strategy(scan: Scan) -> dict:
    """Run the strategy's ``prepare`` with a sampling pass over every shard on the actors.

    With ``skip_bad_shards``, a shard that cannot be read is recorded as skipped here and left
    out of the scan, as the scan itself would.
    """
    run = scan.run

    def sample_rows(m: int, stream: int) -> tuple[dict, int]:
        parts = sample_shards(scan, m, stream)
        rows = [p for p, _ in parts if p]
        total = sum(count for _, count in parts)
        if not rows:
            return {"u": np.empty(0), "key": np.empty(0, np.uint64), "embedding": np.empty((0, 0), np.float32)}, total
        merged = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
        keep = np.lexsort((merged["key"], merged["u"]))[:m]  # the m smallest (u, key) of the pool
        return {name: col[keep] for name, col in merged.items()}, total

    return run.strategy.prepare(sample_rows, run.settings.k, run.settings.seed, _prepare_params(run))


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


def _check_duplicate_ids(scan: Scan) -> None:
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
