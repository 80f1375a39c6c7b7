"""What a selection records: ``batch.parquet``'s table and ``manifest.json``'s content.

Built on the driver from a run's inputs and the actors' bounded results; written by
:func:`alscale.manifest.write_manifest`.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import ray

from alscale import __version__
from alscale.engine.worker import ShardResult
from alscale.manifest import SCHEMA_VERSION
from alscale.reduce._params import ENGINE_KEYS, resolve_params

if TYPE_CHECKING:
    from alscale.engine.driver import PreparedRun

__all__ = ["batch_table", "manifest_data"]

logger = logging.getLogger("alscale.engine.driver")  # its warnings are the run's


def batch_table(run: PreparedRun, selected: dict[str, np.ndarray]) -> pa.Table:
    """``batch.parquet``'s table: the selected rows in rank order, with the predicted class and its probability."""
    classes = run.contracts[0].classes
    ids = selected["id"]
    n = len(ids)
    predicted = np.asarray(selected.get("predicted_index", np.zeros(n)), dtype=np.int32)
    columns = {
        "id": pa.array(ids.tolist() if not run.int_ids else np.asarray(ids, dtype=np.int64), type=pa.int64() if run.int_ids else pa.string()),
        "rank": pa.array(np.arange(1, n + 1, dtype=np.int32)),
        "score": pa.array(np.asarray(selected["score"], dtype=np.float64)),
        "strategy": pa.array([run.settings.strategy] * n, type=pa.string()),
        "predicted_class": pa.array([classes[i] for i in predicted.tolist()], type=pa.string()),
        "predicted_index": pa.array(predicted),
        "confidence": pa.array(np.asarray(selected.get("confidence", np.zeros(n)), dtype=np.float32)),
    }
    if "cluster" in selected:  # Cluster-Margin's
        columns["cluster"] = pa.array(np.asarray(selected["cluster"], dtype=np.int32))
    return pa.table(columns)


def _versions() -> dict[str, str]:
    """The versions a run's result depends on."""
    import onnxruntime
    import pyarrow

    versions = {"alscale": __version__, "ray": ray.__version__, "onnxruntime": onnxruntime.__version__, "pyarrow": pyarrow.__version__}
    versions["numpy"] = np.__version__
    versions["python"] = sys.version.split()[0]
    return versions


def _parameter_values(run: PreparedRun) -> dict:
    """Every parameter of the strategy as this run used it: the ones given over the defaults."""
    values = resolve_params(run.strategy.name, run.strategy.defaults, run.settings.strategy_params, from_user=True)
    return {key: value for key, value in values.items() if key not in ENGINE_KEYS}


def manifest_data(run: PreparedRun, results: list[ShardResult], info: dict, skipped: list[dict], created: str) -> dict:
    """``manifest.json``'s content: what ran on what, what it counted, how long each stage took.

    Warns when labeled ids are not in the pool, or when the exclude files matched nothing.
    """
    s = run.settings
    fingerprint = run.pool.fingerprint()
    stage_seconds: dict[str, float] = {}
    for r in results:
        for name, secs in r.timings.items():
            stage_seconds[name] = stage_seconds.get(name, 0.0) + secs
    counts = {
        "rows_total": int(sum(r.rows_total for r in results)),
        "rows_scored": int(sum(r.rows_scored for r in results)),
        "rows_excluded": int(sum(r.rows_excluded for r in results)),
        "rows_invalid": int(sum(r.rows_invalid for r in results)),
        "rows_labeled_in_pool": int(sum(r.rows_labeled for r in results)),
        "labeled_ids_given": int(run.labeled_keys.size),
        "labeled_ids_not_in_pool": int(max(0, run.labeled_keys.size - sum(r.rows_labeled for r in results))),
        "exclude_ids_given": int(run.exclude_keys.size),
        "shards": len(results) + len(skipped),
        "shards_skipped": len(skipped),
        "shards_resumed": run.resumed_shards,
    }
    if counts["labeled_ids_not_in_pool"]:
        logger.warning("%d labeled id(s) are not in the pool", counts["labeled_ids_not_in_pool"])
    if s.exclude and not s.labeled and counts["exclude_ids_given"] and not counts["rows_excluded"] and counts["rows_scored"]:
        # (with labeled files too, the exclusions count their rows: their own warning above covers them)
        logger.warning("none of the %d id(s) of the exclude files is in the pool, so nothing was excluded (ids of another "
                       "pool, or of another form: '7' against 'doc-7'?)", counts["exclude_ids_given"])
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "created_at": created,
        "strategy": {"name": s.strategy, "params": dict(s.strategy_params), "values": _parameter_values(run), "info": info},
        "k": s.k,
        "seed": s.seed,
        "model": {
            "paths": [c.path for c in run.contracts],
            "sha256": [c.sha256 for c in run.contracts],
            "classes": list(run.contracts[0].classes),
            "contract": [c.to_dict() for c in run.contracts],
        },
        "pool": {
            "spec": run.pool.spec,
            "paths": [f.path for f in run.pool.files],
            "filesystem": run.pool.filesystem_uri,
            "id_column": s.id_column,
            "feature_columns": list(run.feature_spec.columns),
            "feature_layout": run.feature_spec.kind,
            "files": fingerprint["files"],
            "fingerprint": fingerprint["sha256"],
        },
        "counts": counts,
        "skipped_shards": skipped,
        "memory": {"actor_peak_rss_mb": [round(r.peak_rss_mb, 1) for r in results]},
        "batch_sizes": [r.batch_size for r in results],  # rows per model run, per shard (the setting may be "auto")
        "read_batch_rows": [r.read_rows for r in results],  # rows per record batch read, per shard
        "settings": s.to_dict(),
        "checkpoints": run.checkpoints.directory if (run.checkpoints is not None and s.keep_checkpoints) else None,
        "timings": {**{k: round(v, 4) for k, v in run.timings.items()}, "actor_seconds": {k: round(v, 4) for k, v in stage_seconds.items()}},
        "versions": _versions(),
    }
