"""The per-shard work: stream row groups, run the model, score, keep a bounded result.

:class:`ShardWorker` is a plain class; the driver wraps it with ``ray.remote`` so each actor
loads the model once (in ``__init__``) and then scores whole shards.  It can equally run in
the driver's process (the single-process reference the tests compare against).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from alscale.exceptions import AlscaleError, ShardStateLostError, StrategyError
from alscale.model.contract import ModelContract
from alscale.model.session import DEFAULT_BATCH_SIZE, ModelOutputs, ModelRunner
from alscale.pool.features import FeatureSpec, feature_dtype
from alscale.engine.storage import read_file, write_file_atomic
from alscale.pool.reader import id_at, iter_ids, iter_shard
from alscale.pool.shards import Shard
from alscale.reduce.topk import TopK
from alscale.rowrandom import id_keys
from alscale.strategies import ScoringBatch, Strategy

__all__ = ["KeyOrder", "ScoringJob", "ShardResult", "ShardWorker", "state_file_name"]

logger = logging.getLogger(__name__)

#: Feature bytes per record batch read: about one core's L2 cache here, so the decoded rows are
#: still in cache when the model runs on them.  The model runs on slices of its own batch size.
READ_BATCH_BYTES = 1 << 20
#: The most model batches one record batch holds.
MAX_READ_RUNS = 8


@dataclass(frozen=True)
class ScoringJob:
    """What every shard worker of one run shares (small, picklable).

    ``strategy`` is the :class:`Strategy` itself, not its name: one registered in the driver's
    process only (``alscale.strategies.register``) is unknown to the actors' registries.
    """

    filesystem_uri: str | None
    feature_spec: FeatureSpec
    id_column: str
    contracts: tuple[ModelContract, ...]
    strategy: Strategy
    strategy_params: dict = field(default_factory=dict)
    seed: int = 0
    batch_size: int | str = "auto"
    threads: int = 1
    on_invalid: str = "error"


@dataclass
class ShardResult:
    """One shard's outcome.

    Attributes
    ----------
    index : int
        The shard's index in the plan.
    top : dict of ndarray or None
        The shard's top-K rows (``TopK.result()``), for top-K strategies.
    rows_total, rows_scored, rows_excluded, rows_invalid, rows_labeled : int
        ``rows_scored`` counts selectable rows that went through the model.
    invalid_example : object
        The id of one row with NaN/inf features, if any.
    timings : dict
        Seconds spent per stage in this shard (read, infer, score).
    info : dict
        Extra facts from a diversity strategy's state builder.
    peak_rss_mb : float
        The worker process's peak resident memory when the shard ended.
    batch_size, read_rows : int
        Rows per model run, and per record batch read (a multiple of ``batch_size``).
    key_range : tuple of int or None
        ``(first, last)`` row key when the shard's keys strictly increase (then its keys need
        not be sent for the duplicate check unless ranges overlap).
    """

    index: int
    top: dict[str, np.ndarray] | None = None
    rows_total: int = 0
    rows_scored: int = 0
    rows_excluded: int = 0
    rows_invalid: int = 0
    rows_labeled: int = 0
    invalid_example: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    batch_size: int = 0  # rows per model run
    read_rows: int = 0  # rows per record batch the shard was read in (a multiple of batch_size)
    key_range: tuple[int, int] | None = None  # (min, max) key when the shard's keys strictly increase

    @property
    def keeps_keys(self) -> bool:
        """Whether the shard's row keys are kept for the duplicate-id check (its ids do not strictly increase)."""
        return self.key_range is None and self.rows_total > 0


def read_batch_rows(model_rows: int, row_bytes: int, target_bytes: int = READ_BATCH_BYTES, most: int = MAX_READ_RUNS) -> int:
    """Rows per record batch read: a multiple of the model's batch, about ``target_bytes`` of features.

    Reading, checking and scoring cost a fixed amount per record batch besides their per-row
    work, so a shard is read in batches of up to ``most`` model batches, as long as one stays
    near the CPU's cache size; the model still runs on slices of ``model_rows``.

    Parameters
    ----------
    model_rows : int
        Rows per model run.
    row_bytes : int
        Feature bytes per row.

    Returns
    -------
    int
    """
    runs = max(1, min(most, target_bytes // max(1, model_rows * row_bytes)))
    return model_rows * runs


def sample_cut(m: int, n: int, sigmas: float = 5.0) -> float:
    """A cut on ``u`` (uniform on [0, 1)) below which at least ``m`` of ``n`` rows fall, but for
    a chance of about 3e-7 (five standard deviations); 1.0 when ``m`` is most of ``n``.

    Parameters
    ----------
    m : int
        Rows wanted.
    n : int
        Rows the ``u`` values are drawn for.

    Returns
    -------
    float
    """
    if n <= 0:
        return 1.0
    return min(1.0, (m + sigmas * np.sqrt(m) + 1.0) / n)


def state_file_name(shard_index: int) -> str:
    """The file a shard's diversity state is checkpointed to, in the run's checkpoint folder."""
    return f"state-{shard_index:05d}.pkl"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``keys`` are in ``sorted_keys`` (sorted, unique)."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == sorted_keys.size] = 0
    return sorted_keys[pos] == keys


def _finite_rows(features: np.ndarray) -> np.ndarray:
    """Rows of ``features`` (n, d) without NaN or inf (a fast flat check first: usually all are)."""
    if np.isfinite(features).all():
        return np.ones(features.shape[0], dtype=bool)
    return np.isfinite(features).all(axis=1)


class KeyOrder:
    """Whether a shard's row keys strictly increase, followed batch by batch without keeping them.

    Ids written in increasing order are the common case: such a shard cannot hold a duplicate
    itself, and shards whose key ranges do not overlap cannot share one, so the pool-wide
    duplicate check needs no keys at all.  Otherwise the keys are read again for the check.
    """

    def __init__(self) -> None:
        self.increasing = True
        self.first: int | None = None
        self.last: np.uint64 | None = None

    def add(self, keys: np.ndarray) -> None:
        """Follow one batch's keys (n,), uint64, in scan order."""
        if not self.increasing or keys.size == 0:
            return
        if (self.last is not None and not keys[0] > self.last) or (keys.size > 1 and not (keys[1:] > keys[:-1]).all()):
            self.increasing = False
            return
        if self.first is None:
            self.first = int(keys[0])
        self.last = keys[-1]

    @property
    def range(self) -> tuple[int, int] | None:
        """``(first, last)`` key when every key so far was larger than the one before, else None."""
        if not self.increasing or self.first is None:
            return None
        return self.first, int(self.last)


def bucket_keys(keys: Sequence[np.ndarray], n_buckets: int) -> list[np.ndarray]:
    """Split row keys into ``n_buckets`` arrays by ``key % n_buckets`` (for the id check)."""
    allk = np.concatenate(keys) if keys else np.empty(0, dtype=np.uint64)
    if n_buckets == 1:
        return [allk]
    which = allk % np.uint64(n_buckets)
    return [allk[which == b] for b in range(n_buckets)]


def find_duplicate_key(*sorted_parts: np.ndarray) -> int | None:
    """One key that occurs twice across the given arrays, or None."""
    if not sorted_parts:
        return None
    allk = np.sort(np.concatenate(sorted_parts))
    same = np.flatnonzero(allk[1:] == allk[:-1])
    return int(allk[same[0]]) if same.size else None


class ShardWorker:
    """Scores shards with one loaded model (or committee).

    Parameters
    ----------
    job : ScoringJob

    Attributes
    ----------
    rows_read : int
        Rows read so far by this worker (all shards); the driver polls it for the progress bar.
    batch_size : int
        Rows per model run: ``job.batch_size``, or for ``"auto"`` the size this worker timed
        fastest for its model (:meth:`ModelRunner.fastest_batch_size`) as it started.
    read_rows : int
        Rows per record batch read (:func:`read_batch_rows`): a few model runs' worth, so the
        fixed cost of each batch's reading, checks and scoring is shared by more rows.
    """

    def __init__(self, job: ScoringJob):
        self.job = job
        self.rows_read = 0
        self.states: dict[int, Any] = {}
        self.startup_error: AlscaleError | None = None
        try:
            self._start(job)
        except AlscaleError as exc:  # kept for ready(): raised here, Ray would restart the actor, then report a crash
            self.startup_error = exc

    def _start(self, job: ScoringJob) -> None:
        """Load the model (and time batch sizes): what ``__init__`` does once per actor."""
        self.strategy = job.strategy
        self.runner = ModelRunner(job.contracts, threads=job.threads, want_embeddings=self.strategy.needs_embedding)
        self.batch_size = self._choose_batch_size()
        self.runner.rows_per_run = self.batch_size
        # float64 features for a double-input model over numeric or list columns, decided once
        self.feature_dtype = feature_dtype(job.feature_spec, [c.input_type for c in job.contracts])
        # a list<> column's rows are read against the model's width: a row of another length is named itself
        spec, model_width = job.feature_spec, job.contracts[0].input_width
        self.read_spec = dataclasses.replace(spec, width=model_width) if spec.width <= 0 and model_width else spec
        width = job.contracts[0].input_width or job.feature_spec.width  # -1: a list column of unknown width
        self.read_rows = read_batch_rows(self.batch_size, self.feature_dtype.itemsize * width) if width > 0 else self.batch_size

    def ready(self) -> None:
        """Return once the worker is up; raise the error its start-up met, if any.

        Raises
        ------
        AlscaleError
            What loading the model on this node raised (a model file the node cannot read, an
            output that does not fit the strategy, ...).
        """
        if self.startup_error is not None:
            raise self.startup_error

    def _choose_batch_size(self) -> int:
        # at start-up, with the model loading: a one-off 0.1-0.3 s, outside the scan
        if self.job.batch_size != "auto":
            return int(self.job.batch_size)
        width = self.job.contracts[0].input_width or self.job.feature_spec.width
        if not width or width < 1:
            return DEFAULT_BATCH_SIZE
        try:
            size, _ = self.runner.fastest_batch_size(width)
        except Exception as exc:  # noqa: BLE001  (the scan will report a real problem with the model)
            logger.warning("could not time the model on synthetic batches (%s); using batch size %d", exc, DEFAULT_BATCH_SIZE)
            return DEFAULT_BATCH_SIZE
        return size

    # -- the scan shared by every strategy -------------------------------------------------
    def _scan(
        self,
        shard: Shard,
        exclude_keys: np.ndarray,
        labeled_keys: np.ndarray,
        consume: Callable[[np.ndarray, np.ndarray, ModelOutputs, np.ndarray | None, np.ndarray | None], None],
        result: ShardResult,
    ) -> KeyOrder:
        """Stream the shard through the model and hand each batch's outputs to ``consume``.

        ``consume(ids, keys, outputs, selectable, labeled)`` gets ``selectable`` and ``labeled``
        as boolean masks over the rows it is given, or None for "all rows" and "no row": the common
        case (finite features, nothing excluded or labeled) then costs no mask at all.
        Returns the shard's :class:`KeyOrder` (whether its keys strictly increase: then its ids need no bucket exchange).
        """
        self.ready()  # a worker whose start-up failed (restarted after its node was lost) says why
        job = self.job
        order = KeyOrder()
        t = result.timings
        t_read = t_infer = t_score = 0.0
        check_exclude, check_labeled = exclude_keys.size > 0, labeled_keys.size > 0
        diversity = self.strategy.kind == "diversity"
        stop_inference = False
        result.batch_size, result.read_rows = self.batch_size, self.read_rows
        t0 = time.perf_counter()
        for batch in iter_shard(job.filesystem_uri, shard, self.read_spec, job.id_column, self.read_rows, reuse_buffer=True,
                                dtype=self.feature_dtype):
            t1 = time.perf_counter()
            t_read += t1 - t0
            n = batch.ids.shape[0]
            keys = id_keys(batch.ids)
            order.add(keys)
            result.rows_total += n
            self.rows_read += n
            if not (check_exclude or check_labeled) and np.isfinite(batch.features).all():
                rows, selectable, labeled, n_selectable = slice(None), None, None, n
            else:
                rows, selectable, labeled, n_selectable = self._masks(batch, keys, exclude_keys, labeled_keys, diversity, result)
                if result.rows_invalid and job.on_invalid == "error":
                    stop_inference = True  # keep counting, stop scoring: the run will fail
            if not stop_inference and rows is not None:
                ids = batch.ids[rows]
                outputs = self.runner(batch.features[rows], ids)  # the ids only name a row in an error
                t2 = time.perf_counter()
                t_infer += t2 - t1
                consume(ids, keys[rows], outputs, selectable, labeled)
                t0 = time.perf_counter()
                t_score += t0 - t2
                result.rows_scored += n_selectable
            else:
                t0 = time.perf_counter()
        for name, seconds in (("read", t_read), ("infer", t_infer), ("score", t_score)):
            t[name] = t.get(name, 0.0) + seconds
        return order

    @staticmethod
    def _masks(batch, keys, exclude_keys, labeled_keys, diversity, result):
        """The general case of the scan: which rows feed the model, and which of those are selectable.

        Excluded rows count as excluded whatever their features hold; only the others count as
        invalid when a feature is NaN or inf.

        Returns ``(rows, selectable, labeled, n_selectable)``; ``rows`` is None when no row feeds
        the model, and ``selectable`` and ``labeled`` are masks over the rows that do.
        """
        excluded = _member(exclude_keys, keys)
        labeled = _member(labeled_keys, keys)
        result.rows_labeled += int(labeled.sum())
        finite = _finite_rows(batch.features)
        invalid = ~finite & ~excluded  # an excluded row is out whatever its features hold: not judged on them
        n_invalid = int(invalid.sum())
        if n_invalid:
            result.rows_invalid += n_invalid
            if result.invalid_example is None:
                result.invalid_example = id_at(batch.ids, int(np.flatnonzero(invalid)[0]))
        selectable = finite & ~excluded
        result.rows_excluded += int(excluded.sum())
        # rows that feed the model: selectable ones, plus labeled ones a diversity strategy may use
        use = finite & (~excluded | labeled) if diversity else selectable
        if not use.any():
            return None, None, None, 0
        rows = slice(None) if use.all() else np.flatnonzero(use)  # a slice keeps the zero-copy view
        return rows, selectable[rows], labeled[rows], int(selectable.sum())

    # -- top-K strategies ----------------------------------------------------------------------
    def score_shard(
        self,
        shard: Shard,
        k: int,
        exclude_keys: np.ndarray,
        labeled_keys: np.ndarray,
        n_buckets: int = 1,
    ) -> tuple:
        """Score a shard and keep its top ``k``.

        Returns
        -------
        tuple
            ``(ShardResult, bucket_0, ..., bucket_{n_buckets-1})``: the result, then the shard's
            row keys split for the distributed duplicate-id check.
        """
        result = ShardResult(index=shard.index)
        top = TopK(k)
        strategy, seed = self.strategy, self.job.seed

        def consume(ids, keys, outputs, selectable, _labeled):
            if selectable is not None and not selectable.all():
                ids, keys = ids[selectable], keys[selectable]
                outputs = ModelOutputs(
                    outputs.probs[selectable],
                    None if outputs.member_probs is None else outputs.member_probs[:, selectable],
                    None if outputs.embeddings is None else outputs.embeddings[selectable],
                )
            if ids.shape[0] == 0:
                return
            batch = ScoringBatch(outputs.probs, keys, seed, outputs.member_probs, outputs.embeddings)
            scores = strategy.score(batch)
            if np.isnan(scores.sum()) and np.isnan(scores).any():  # one cheap sum per batch; a NaN would be dropped below
                raise StrategyError(f"Expected numbers from strategy {strategy.name!r} (higher = more informative; -inf for "
                                    f"a row never to select). Got NaN for {int(np.isnan(scores).sum())} of {len(scores)} rows.")
            admitted = np.flatnonzero(scores >= top.threshold())  # the payload only for rows that can enter
            if admitted.size == 0:
                return
            probs = outputs.probs[admitted]
            predicted = probs.argmax(axis=1)
            confidence = probs[np.arange(len(predicted)), predicted]
            top.add(scores[admitted], ids[admitted], predicted_index=predicted.astype(np.int32), confidence=confidence.astype(np.float32))

        order = self._scan(shard, exclude_keys, labeled_keys, consume, result)
        result.top = top.result() if len(top) else None
        result.peak_rss_mb = peak_rss_mb()
        return (result, *self._finish_keys(shard, order, n_buckets, result))

    # -- diversity strategies -------------------------------------------------------------------
    def build_state(
        self,
        shard: Shard,
        exclude_keys: np.ndarray,
        labeled_keys: np.ndarray,
        n_buckets: int = 1,
        prepared: dict | None = None,
    ) -> tuple:
        """Stream a shard into the diversity strategy's in-memory state (kept on this worker).

        Returns ``(ShardResult, bucket_0, ...)`` like :meth:`score_shard`.
        """
        result = ShardResult(index=shard.index)
        # the shard's row count lets the builder allocate once instead of copying chunks at the end
        builder = self.strategy.make_builder({**self.job.strategy_params, "capacity": shard.rows, **(prepared or {})})

        def consume(ids, keys, outputs, selectable, labeled):
            n = ids.shape[0]
            selectable = np.ones(n, dtype=bool) if selectable is None else selectable
            labeled = np.zeros(n, dtype=bool) if labeled is None else labeled
            builder.add(ids, keys, outputs.probs, outputs.embeddings, selectable, labeled, member_probs=outputs.member_probs)

        order = self._scan(shard, exclude_keys, labeled_keys, consume, result)
        self.states[shard.index] = builder.finish()
        result.info = getattr(self.states[shard.index], "info", {}) or {}
        result.peak_rss_mb = peak_rss_mb()
        return (result, *self._finish_keys(shard, order, n_buckets, result))

    def sample_rows(self, shard: Shard, exclude_keys: np.ndarray, m: int, stream: int) -> tuple[dict, int]:
        """The shard's ``m`` selectable rows with the smallest ``row_uniform(key, seed, stream)``.

        A light pass: every row is read, but the model runs only on rows whose ``u`` is below a
        cut that, for ``u`` uniform on [0, 1), about ``m`` plus five standard deviations of the
        shard's rows pass (:func:`sample_cut`).  The ``m`` smallest below the cut are the
        ``m`` smallest of the shard; when fewer than ``m`` selectable rows pass (many rows
        excluded or invalid), the pass is repeated once with a cut for the selectable rows it
        counted (and again, twice as wide, in the rare case that is not enough).

        Returns ``(rows, selectable_count)`` with rows ``u`` (m,), ``key`` (m,) and
        ``embedding`` (m, d).
        """
        self.ready()
        cut = sample_cut(m, shard.rows)
        while True:
            top, passed, selectable_count = self._sample_pass(shard, exclude_keys, m, stream, cut)
            if passed >= m or cut >= 1.0:
                break
            # the pass counted the selectable rows: cut again for them (and at least twice as wide)
            cut = max(sample_cut(m, selectable_count), min(1.0, 2 * cut))
        out = top.result()
        if "embedding" not in out:
            return {}, selectable_count
        return {"u": -out["score"], "key": out["id"].astype(np.uint64), "embedding": out["embedding"]}, selectable_count

    def _sample_pass(self, shard: Shard, exclude_keys: np.ndarray, m: int, stream: int, cut: float) -> tuple[TopK, int, int]:
        """One pass of :meth:`sample_rows`: ``(top-m on -u, rows below the cut, selectable rows)``."""
        from alscale.rowrandom import row_uniform

        job = self.job
        top = TopK(m)
        passed = selectable_count = 0
        for batch in iter_shard(job.filesystem_uri, shard, self.read_spec, job.id_column, self.read_rows, reuse_buffer=True,
                                dtype=self.feature_dtype):
            keys = id_keys(batch.ids)
            rows = np.flatnonzero(_finite_rows(batch.features) & ~_member(exclude_keys, keys))
            selectable_count += rows.size
            u = row_uniform(keys[rows], job.seed, stream)
            below = u < cut
            passed += int(below.sum())
            admit = below & (-u >= top.threshold())
            if admit.any():
                admitted = rows[admit]
                top.add(-u[admit], keys[admitted], embedding=self.runner(batch.features[admitted]).embeddings)
        return top, passed, selectable_count

    def call(self, shard_index: int, method: str, *args, **kwargs):
        """Run ``method`` of a shard's state (the Ray side of a :class:`ShardGroup`).

        Raises :class:`ShardStateLostError` when this actor does not hold the state (it was
        restarted after a crash), so the driver can rebuild it.
        """
        state = self.states.get(shard_index)
        if state is None:
            raise ShardStateLostError(f"Shard {shard_index}'s state is not on this actor (the actor restarted).")
        return getattr(state, method)(*args, **kwargs)

    def save_state(self, shard_index: int, directory: str) -> str:
        """Write a shard's state (factors, candidates) to ``directory`` (a filesystem URI) atomically; returns the path."""
        return write_file_atomic(directory, state_file_name(shard_index), self.state_bytes(shard_index))

    def load_state(self, shard_index: int, directory: str) -> bool:
        """Load a shard's state saved by :meth:`save_state` (this run's own checkpoint folder)."""
        return self.set_state_bytes(shard_index, read_file(directory, state_file_name(shard_index)))

    def state_bytes(self, shard_index: int) -> bytes:
        """A shard's state, pickled (for :meth:`set_state_bytes` on any actor, or a checkpoint file)."""
        import pickle

        return pickle.dumps(self.states[shard_index], protocol=pickle.HIGHEST_PROTOCOL)

    def set_state_bytes(self, shard_index: int, data: bytes) -> bool:
        """Take a shard's state pickled by :meth:`state_bytes`."""
        import pickle

        self.states[shard_index] = pickle.loads(data)
        return True

    # -- the duplicate-id check -------------------------------------------------------------------
    def find_duplicate(self, *sorted_parts: np.ndarray) -> int | None:
        return find_duplicate_key(*sorted_parts)

    def lookup_ids(self, shard: Shard, key: int) -> list:
        """Every id of the shard (as the pool holds it) whose key is ``key`` (error path only)."""
        from alscale.pool.files import filesystem_for, open_parquet
        from alscale.pool.reader import ids_to_numpy

        fs = filesystem_for(self.job.filesystem_uri)
        target = np.uint64(key)
        found = []
        for piece in shard.pieces:
            table = open_parquet(fs, piece.path).read_row_group(piece.row_group, columns=[self.job.id_column])
            ids = ids_to_numpy(table.column(0).combine_chunks(), self.job.id_column)[piece.first : piece.stop]
            found += [id_at(ids, int(i)) for i in np.flatnonzero(id_keys(ids) == target)]
        return found

    @ray.method(concurrency_group="progress")
    def progress(self) -> int:
        """Rows read so far; answered from its own thread while a shard is being scanned."""
        return self.rows_read

    def key_buckets(self, shard: Shard, n_buckets: int) -> tuple:
        """Read a shard's id column again and split its keys into ``n_buckets`` (the duplicate check)."""
        buckets = self._read_key_buckets(shard, n_buckets)
        return tuple(buckets) if n_buckets > 1 else buckets[0]

    def _read_key_buckets(self, shard: Shard, n_buckets: int) -> list[np.ndarray]:
        keys = [id_keys(batch.ids) for batch in iter_ids(self.job.filesystem_uri, shard, self.job.id_column)]
        return bucket_keys(keys, n_buckets)

    def _finish_keys(self, shard: Shard, order: KeyOrder, n_buckets: int, result: ShardResult) -> list[np.ndarray]:
        """Set ``result.key_range``; the shard's key buckets, empty when its keys strictly increase.

        The driver has increasing shards' keys read again (:meth:`key_buckets`) only in the rare
        case where shard ranges overlap.
        """
        result.key_range = order.range
        if not result.keeps_keys:
            return [np.empty(0, dtype=np.uint64) for _ in range(n_buckets)]
        return self._read_key_buckets(shard, n_buckets)

    def pid(self) -> int:
        """This actor's process id (for operators and fault tests)."""
        import os

        return os.getpid()
