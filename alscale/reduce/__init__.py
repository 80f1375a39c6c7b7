"""The reduce stage: pure numpy (plus FAISS where it pays); never imports Ray."""

from __future__ import annotations

from alscale.reduce.topk import TopK, top_k_order

__all__ = ["TopK", "top_k_order"]
