"""Batches chosen without a model (the seed set, the evaluation set) as batch manifests.

They have the engine's schema, so every labeling queue takes them as it takes a selection:
every ``score`` is 0, ``predicted_class``, ``predicted_index`` and ``confidence`` are null,
and the queues send no pre-annotation.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from alscale.loop.labellog import id_arrow_type
from alscale.manifest.manifest import SCHEMA_VERSION, write_manifest

__all__ = ["id_batch_run_id", "write_id_batch"]


def id_batch_run_id(kind: str, workspace_name: str, seed: int, ids: Sequence, pool_key: str) -> str:
    """A run id for a batch chosen without a model: ``<kind>-<workspace>-<seed>-<digest>``.

    The digest (12 hex digits of a sha256) covers the pool's key and the ids in order, so two
    different batches never share a run id, which queues take as the batch's identity (the
    HTTP queue's ``Idempotency-Key``): not a seed set chosen again with another size, nor the
    batch of another workspace of the same name.
    """
    text = "\n".join([pool_key, *(str(i) for i in np.asarray(ids).tolist())])
    return f"{kind}-{workspace_name}-{int(seed)}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def write_id_batch(batch_dir: str | os.PathLike, ids: np.ndarray, *, id_type: str, strategy: str, run_id: str, seed: int,
                   pool: str | Sequence[str], id_column: str, classes: Sequence | None = None) -> None:
    """Write ``ids``, ranked in the order given, as a batch manifest in ``batch_dir`` (replacing one there).

    Parameters
    ----------
    batch_dir : str or path
    ids : ndarray of shape (n,)
        int64 ids, or str objects for a pool of string ids (``id_type`` "string").
    id_type : {"int64", "string"}
    strategy : str
        Recorded in each row and in the manifest, e.g. "seed-random" or "evaluation".
    run_id : str
        The batch's run id: what queues know it by (a file queue's ``{run_id}``).
    seed : int
    pool : str or list of str
        The pool the ids are from, as the workspace names it.
    id_column : str
    classes : list, optional
        The workspace's classes, for the queues that send a class list (there is no model to name them).
    """
    n = len(ids)
    batch = pa.table({
        "id": pa.array(np.asarray(ids).tolist(), id_arrow_type(id_type)),
        "rank": pa.array(np.arange(1, n + 1, dtype=np.int32)),
        "score": pa.array(np.zeros(n)),
        "strategy": pa.array([strategy] * n, pa.string()),
        "predicted_class": pa.nulls(n, pa.string()),
        "predicted_index": pa.nulls(n, pa.int32()),
        "confidence": pa.nulls(n, pa.float32()),
    })
    write_manifest(batch_dir, batch, {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "k": n, "seed": seed, "strategy": {"name": strategy, "params": {}}, "model": None,
        "pool": {"spec": pool, "paths": [pool] if isinstance(pool, str) else list(pool), "id_column": id_column},
        "counts": {"rows_selected": n}, "classes": None if classes is None else [str(c) for c in classes]}, force=True)
