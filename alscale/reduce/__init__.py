"""The reduce stage: pure numpy (plus FAISS where it pays); never imports Ray.

Top-K (:mod:`~alscale.reduce.topk`) and the diversity selections, each a builder and a
``select_*`` function: :mod:`~alscale.reduce.badge`, :mod:`~alscale.reduce.kcenter`,
:mod:`~alscale.reduce.cluster_margin`.  Nothing here imports :mod:`alscale.strategies`: the
registry there composes scorers and these reducers into registered strategies.
"""

from __future__ import annotations

from alscale.reduce.shardgroup import LocalShardGroup, Selection, ShardGroup
from alscale.reduce.topk import TopK, top_k_order

__all__ = ["LocalShardGroup", "Selection", "ShardGroup", "TopK", "top_k_order"]
