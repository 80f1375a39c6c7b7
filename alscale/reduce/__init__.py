"""The reduce stage: pure numpy (plus FAISS where it pays); never imports Ray."""

from __future__ import annotations

from alscale.reduce.shardgroup import LocalShardGroup, Selection, ShardGroup
from alscale.reduce.topk import TopK, top_k_order

__all__ = ["LocalShardGroup", "Selection", "ShardGroup", "TopK", "top_k_order"]
