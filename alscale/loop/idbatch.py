"""Batches chosen without a model (the seed set, the evaluation set) as batch manifests.

They have the engine's schema, so every labeling queue takes them as it takes a selection:
every ``score`` is 0, ``predicted_class``, ``predicted_index`` and ``confidence`` are null,
and the queues send no pre-annotation.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from alscale.manifest.manifest import write_manifest

__all__ = ["write_id_batch"]


def write_id_batch(batch_dir: str | os.PathLike, ids: np.ndarray, *, id_type: str, strategy: str, run_id: str, seed: int,
                   pool: str | Sequence[str], id_column: str) -> None:
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
    """
    n = len(ids)
    batch = pa.table({
        "id": pa.array(np.asarray(ids).tolist(), pa.int64() if id_type == "int64" else pa.string()),
        "rank": pa.array(np.arange(1, n + 1, dtype=np.int32)),
        "score": pa.array(np.zeros(n)),
        "strategy": pa.array([strategy] * n, pa.string()),
        "predicted_class": pa.nulls(n, pa.string()),
        "predicted_index": pa.nulls(n, pa.int32()),
        "confidence": pa.nulls(n, pa.float32()),
    })
    write_manifest(batch_dir, batch, {
        "schema_version": 1, "run_id": run_id, "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "k": n, "seed": seed, "strategy": {"name": strategy, "params": {}}, "model": None,
        "pool": {"spec": pool, "paths": [pool] if isinstance(pool, str) else list(pool), "id_column": id_column},
        "counts": {"rows_selected": n}}, force=True)
