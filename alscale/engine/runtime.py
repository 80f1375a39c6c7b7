"""Starting, reusing and stopping Ray for a run.

A run uses the Ray that is already initialised in this process (a notebook, a Ray job, a test
fixture) and leaves it running.  Otherwise it connects to ``address`` or starts a private
local Ray in its own temporary directory, with usage statistics off, and shuts it down after.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import ray

__all__ = ["ray_session"]

logger = logging.getLogger(__name__)


_RAY_AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only errors from logger ``name`` inside the block."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Make sure Ray is up for the duration of the block.

    Parameters
    ----------
    address : str, optional
        A cluster to connect to (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``).
    num_cpus : int, optional
        CPUs of a private local Ray (default: all).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        yield
        return
    temp_dir = None
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    if address:
        ray.init(address=address, **kwargs)
    else:
        temp_dir = tempfile.mkdtemp(prefix="alscale-ray-")
        # address="local": always a new private Ray, never one found on this machine.  Ray logs a
        # notice that token auth (its default) is on; stderr is for alscale's one-line errors
        with _quiet(_RAY_AUTH_NOTICE_LOGGER):
            ray.init(address="local", num_cpus=num_cpus, _temp_dir=temp_dir, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
