"""The engine: the only package that talks to Ray.

It places the pool -> model -> strategies -> reduce -> manifest flow on shard actors.
"""

from __future__ import annotations

from alscale.engine.driver import prepare_run, run_selection
from alscale.engine.runtime import ray_session
from alscale.engine.worker import ScoringJob, ShardResult, ShardWorker

__all__ = ["ScoringJob", "ShardResult", "ShardWorker", "prepare_run", "ray_session", "run_selection"]
