"""Checkpoints of finished shards, so that a run whose driver died resumes where it stopped.

Each finished shard of a top-K strategy is saved as one ``shard-NNNNN.npz`` file: its top-K
arrays, its counts and timings (JSON), and its row keys split into the buckets of the
duplicate-id check.  The files live in ``<checkpoint_dir>/<run key>/``, where
``checkpoint_dir`` defaults to ``<out>.checkpoints`` and may be any pyarrow filesystem URI,
and the run key hashes everything that decides a shard's result: pool fingerprint, model
sha256s, strategy and its parameters, ``k``, ``seed``, the shard plan, the exclude and labeled
ids, the id and feature columns, ``on_invalid``.  A rerun with the same inputs finds the same
key and reuses the shards saved there; any change gives a new key and starts afresh.

Writes are atomic where the filesystem renames (a temporary name, then ``move``); on object
stores a single object appears whole or not at all.  A local checkpoint folder is the driver's
own disk.  A shard whose ids strictly increase keeps no keys, so its file is small and the
driver writes it from a background thread (no extra Ray worker to start while the actors
scan).  A shard that keeps keys is saved, and every shard is loaded, by a Ray task on the
driver's node, so the keys go between the object store and the file without passing through
the driver's memory.

Diversity strategies also save each shard's state (its factors or candidates, pickled by the
actor that holds it, ``state-NNNNN.pkl``); a shard counts as finished when both files are there,
and a resumed run loads the state onto an actor instead of reading and scoring the shard again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import ray
from pyarrow import fs as pafs

from alscale.engine.errors import discard_errors, unwrap_ray_error
from alscale.exceptions import first_line
from alscale.engine.worker import ShardResult, state_file_name
from alscale.engine.storage import read_file, split_location, write_file_atomic

__all__ = ["ShardCheckpoints", "checkpoint_key", "open_checkpoints", "remove_checkpoints"]

logger = logging.getLogger(__name__)

FORMAT = 1
_SCALARS = [f.name for f in dataclasses.fields(ShardResult) if f.name != "top"]


def _keys_digest(keys: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(keys, dtype=np.uint64).tobytes()).hexdigest()


def checkpoint_key(run: Any, shards: list, n_buckets: int) -> str:
    """Hash of everything that decides the shards' results (a :class:`PreparedRun` and its plan).

    Returns
    -------
    str
        24 hex digits.
    """
    s = run.settings
    parts = {
        "format": FORMAT,
        "pool": run.pool.fingerprint()["sha256"],
        "models": [c.sha256 for c in run.contracts],
        "outputs": [[c.class_output, c.output_kind, c.embedding_output] for c in run.contracts],
        "strategy": s.strategy,
        "params": dict(s.strategy_params),
        "k": s.k,
        "seed": s.seed,
        "id_column": s.id_column,
        "features": list(run.feature_spec.columns),
        "on_invalid": s.on_invalid,
        "exclude": _keys_digest(run.exclude_keys),
        "labeled": _keys_digest(run.labeled_keys),
        "plan": [shard.describe() for shard in shards],
        "buckets": n_buckets,
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _encode(result: ShardResult, buckets: tuple[np.ndarray, ...]) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    top = result.top
    if top is not None:
        for name, values in top.items():
            values = np.asarray(values)
            if values.dtype == object or values.dtype.kind == "U":  # string ids: UTF-8 bytes and offsets, not padded str
                data, offsets = _pack_strings(values.tolist())
                arrays["topstr_" + name], arrays["topoff_" + name] = data, offsets
            else:
                arrays["top_" + name] = values
    for i, keys in enumerate(buckets):
        arrays[f"bucket_{i}"] = np.asarray(keys, dtype=np.uint64)
    meta = {name: getattr(result, name) for name in _SCALARS}
    meta["has_top"] = top is not None
    meta["n_buckets"] = len(buckets)
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _decode(data: bytes) -> tuple[ShardResult, list[np.ndarray]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        top = None
        if meta.pop("has_top"):
            top = {}
            for name in npz.files:
                if name.startswith("top_"):
                    top[name[4:]] = npz[name]
                elif name.startswith("topstr_"):
                    top[name[7:]] = _unpack_strings(npz[name], npz["topoff_" + name[7:]])
                elif name.startswith("topobj_"):  # written before string ids were packed
                    top[name[7:]] = npz[name].astype(object)
        n_buckets = meta.pop("n_buckets")
        buckets = [npz[f"bucket_{i}"] for i in range(n_buckets)]
    result = ShardResult(top=top, **{name: meta[name] for name in _SCALARS if name in meta})
    return result, buckets


def _pack_strings(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one uint8 array of their UTF-8 bytes and int64 offsets (n + 1,): their own size, whatever the longest."""
    encoded = [v.encode("utf-8", "surrogatepass") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _unpack_strings(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`_pack_strings` undone: an object array of str."""
    raw = data.tobytes()
    bounds = offsets.tolist()
    out = np.empty(len(bounds) - 1, dtype=object)
    out[:] = [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(bounds[:-1], bounds[1:])]
    return out


def _write(directory: str, index: int, result: ShardResult, buckets: tuple[np.ndarray, ...]) -> str:
    """Write one shard's file atomically (a temporary name, then ``move``); returns its path."""
    return write_file_atomic(directory, f"shard-{index:05d}.npz", _encode(result, buckets))


@ray.remote(num_cpus=0, max_retries=2)
def _save_state(directory: str, index: int, data: bytes) -> str:
    return write_file_atomic(directory, state_file_name(index), data)


@ray.remote(num_cpus=0)
def _load_state(directory: str, index: int) -> bytes:
    return read_file(directory, state_file_name(index))


@ray.remote(num_cpus=0, max_retries=2)
def _save(directory: str, index: int, result: ShardResult, *buckets: np.ndarray) -> str:
    return _write(directory, index, result, buckets)


@ray.remote(num_cpus=0)
def _load(directory: str, index: int) -> tuple:
    result, buckets = _decode(read_file(directory, f"shard-{index:05d}.npz"))
    return (result, *buckets)


class ShardCheckpoints:
    """The checkpoint folder of one run.

    Parameters
    ----------
    root : str
        ``checkpoint_dir``: a local folder or a filesystem URI.
    key : str
        The run key (:func:`checkpoint_key`).
    n_buckets : int
        Buckets of the duplicate-id check stored per shard.
    """

    def __init__(self, root: str, key: str, n_buckets: int, with_state: bool = False, owns_root: bool = False):
        self.with_state = with_state
        self.owns_root = owns_root  # the root is this output's own (<out>.checkpoints): removed whole on success
        self.root = root.rstrip("/")
        self.directory = f"{self.root}/{key}"
        self.n_buckets = n_buckets
        self._pending: list[tuple[Any, int | None]] = []  # (Ray ref or future, id() of the actor writing it) per save in flight
        self._writer: ThreadPoolExecutor | None = None  # started by the first save the driver writes
        node_id = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._here = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)

    def finished(self) -> set[int]:
        """Indices of the shards saved in this run's folder."""
        filesystem, path = split_location(self.directory)
        try:
            infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError:
            return set()
        done, states = set(), set()
        for info in infos:
            name = info.base_name
            for prefix, suffix, found in (("shard-", ".npz", done), ("state-", ".pkl", states)):
                if name.startswith(prefix) and name.endswith(suffix):
                    try:
                        found.add(int(name[len(prefix) : -len(suffix)]))
                    except ValueError:
                        continue
        return done & states if self.with_state else done

    def load(self, index: int) -> tuple[ShardResult, list] | None:
        """One saved shard: its result (in the driver) and its key buckets (object refs); None if unreadable."""
        refs = _load.options(num_returns=1 + self.n_buckets, scheduling_strategy=self._here).remote(self.directory, index)
        try:
            result = ray.get(refs[0])
        except Exception as exc:  # a damaged checkpoint is scored again
            discard_errors(refs[1:])
            err = unwrap_ray_error(exc)
            reason = first_line(err)
            logger.warning("checkpoint of shard %d in %s is unreadable (%s); scoring it again", index, self.directory, reason)
            return None
        if result.index != index:
            return None
        return result, list(refs[1:])

    def save(self, result: ShardResult, result_ref: Any, bucket_refs: list) -> None:
        """Save a finished shard in the background.

        ``result`` is the shard's result, already in the driver; ``result_ref`` and
        ``bucket_refs`` are its object refs.  Only shards whose ids do not strictly increase
        keep keys (``result.keeps_keys``); those are saved by a task that resolves the refs on
        the driver's node.
        """
        if not result.keeps_keys:  # its key buckets are empty
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alscale-checkpoint")
            empty = tuple(np.empty(0, dtype=np.uint64) for _ in bucket_refs)
            self._pending.append((self._writer.submit(_write, self.directory, result.index, result, empty), None))
        else:
            self._pending.append(
                (_save.options(scheduling_strategy=self._here).remote(self.directory, result.index, result_ref, *bucket_refs), None)
            )

    def save_state(self, actor: Any, index: int) -> None:
        """Save shard ``index``'s diversity state, held by ``actor``, next to the shard file.

        A local folder is the driver's own disk, which may not be the actor's: the state comes
        over as bytes and a task on the driver's node writes it.  A URI is written by the actor.
        """
        if self.is_local:
            ref = _save_state.options(scheduling_strategy=self._here).remote(self.directory, index, actor.state_bytes.remote(index))
        else:
            ref = actor.save_state.remote(index, self.directory)
        self._pending.append((ref, id(actor)))

    def load_state(self, actor: Any, index: int) -> Any:
        """Put shard ``index``'s saved state on ``actor`` (read where :meth:`save_state` wrote it); a ref to wait on."""
        if self.is_local:
            return actor.set_state_bytes.remote(index, _load_state.options(scheduling_strategy=self._here).remote(self.directory, index))
        return actor.load_state.remote(index, self.directory)

    @property
    def is_local(self) -> bool:
        """Whether the checkpoints are on the driver's local disk (not at a filesystem URI)."""
        return "://" not in self.directory

    def flush(self, lost: set[int] = frozenset()) -> None:
        """Wait for the saves started so far (a failed save only costs a rescore on resume).

        ``lost``: id() of actors that stopped answering; their saves are not waited for.
        """
        for pending, writer in self._pending:
            if writer in lost:
                logger.warning("a shard state checkpoint in %s was not written: its actor was lost", self.directory)
                continue
            try:
                pending.result() if isinstance(pending, Future) else ray.get(pending)
            except Exception as exc:
                logger.warning("a shard checkpoint could not be written to %s: %s", self.directory, exc)
        self._pending.clear()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    def others(self) -> list[str]:
        """Folders in the root of runs with other inputs or another shard plan (not resumed by this one)."""
        filesystem, root = split_location(self.root)
        try:
            infos = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        except OSError:
            return []
        own = self.directory.rsplit("/", 1)[-1]
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name != own)

    def remove(self) -> None:
        """Delete this run's checkpoints (after its manifest is written): see :func:`remove_checkpoints`."""
        self.flush()
        remove_checkpoints(self.directory, self.root, whole_root=self.owns_root)


def remove_checkpoints(directory: str, root: str, *, whole_root: bool) -> None:
    """Delete a run's checkpoint ``directory``, and ``root`` too when it is empty or ``whole_root``.

    ``whole_root``: the root is the output's own (``<out>.checkpoints``), so the folders of
    earlier attempts at this output with other settings (another actor count) go as well.
    """
    filesystem, path = split_location(directory)
    _, root_path = split_location(root.rstrip("/"))
    try:
        if whole_root:
            if filesystem.get_file_info(root_path).type != pafs.FileType.NotFound:
                filesystem.delete_dir(root_path)
            return
        if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
            filesystem.delete_dir(path)
        exists = filesystem.get_file_info(root_path).type != pafs.FileType.NotFound
        if exists and not filesystem.get_file_info(pafs.FileSelector(root_path, allow_not_found=True)):
            filesystem.delete_dir(root_path)
    except OSError as exc:
        logger.warning("could not remove checkpoints in %s: %s", directory, exc)


def open_checkpoints(run: Any, shards: list, n_buckets: int) -> ShardCheckpoints | None:
    """The checkpoints of a run, or None when it keeps none.

    ``checkpoint_dir`` if set, else ``<out>.checkpoints`` when the run writes an output; none
    without an output.
    """
    s = run.settings
    root = s.checkpoint_dir or (f"{str(s.out).rstrip('/')}.checkpoints" if s.out else None)
    if not root:
        return None
    checkpoints = ShardCheckpoints(root, checkpoint_key(run, shards, n_buckets), n_buckets,
                                   with_state=run.strategy.kind == "diversity", owns_root=not s.checkpoint_dir)
    others = checkpoints.others()
    if others:
        logger.warning("%s holds checkpoints of %d run(s) with other inputs or another shard plan (another actor count?); "
                       "they are not resumed%s", root, len(others), ", and go once this run's manifest is written" if checkpoints.owns_root else "")
    return checkpoints
