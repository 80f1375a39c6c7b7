"""The reduce stage: pure numpy (plus FAISS where it pays); never imports Ray."""

from __future__ import annotations

from alscale.reduce.kmeans_parallel import kmeans_parallel, kmeanspp_factored
from alscale.reduce.shardgroup import LocalShardGroup, Selection, ShardGroup
from alscale.reduce.topk import TopK, top_k_order

__all__ = ["LocalShardGroup", "Selection", "ShardGroup", "TopK", "kmeans_parallel", "kmeanspp_factored", "top_k_order"]
