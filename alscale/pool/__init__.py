"""The unlabeled pool: Arrow/Parquet files, feature layouts, shard plans, streaming reads.

Only pyarrow and numpy here; the driver reads footers, actors read rows.
"""

from __future__ import annotations

from alscale.pool.features import FeatureSpec, decode_features, detect_features
from alscale.pool.files import PoolFile, PoolFiles, resolve_pool
from alscale.pool.idfiles import read_id_file, read_id_keys
from alscale.pool.reader import RowBatch, iter_shard
from alscale.pool.shards import Shard, plan_shards

__all__ = [
    "FeatureSpec",
    "PoolFile",
    "PoolFiles",
    "RowBatch",
    "Shard",
    "decode_features",
    "detect_features",
    "iter_shard",
    "plan_shards",
    "read_id_file",
    "read_id_keys",
    "resolve_pool",
]
