"""Shared fixtures for the loop tests: small real Parquet pools in tmp_path."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def write_pool(path, X, y=None, *, ids=None, extra=None):
    """Write a pool with an int64 ``id``, a fixed_size_list<float32> ``features`` and optional columns."""
    X = np.asarray(X, dtype=np.float32)
    n, d = X.shape
    ids = np.arange(n, dtype=np.int64) if ids is None else ids
    cols = {"id": pa.array(ids), "features": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), d)}
    if y is not None:
        cols["label"] = pa.array(np.asarray(y).tolist())
    for name, values in (extra or {}).items():
        cols[name] = pa.array(list(values))
    pq.write_table(pa.table(cols), path)
    return path


@pytest.fixture
def blob_pool(tmp_path):
    """300 rows, 3 well-separated classes, 4 features, a 'site' group column."""
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0, 0], [4, 4, 0, 0], [0, 4, 4, 0]], dtype=np.float32)
    y = np.repeat(np.arange(3), 100)
    X = centers[y] + rng.normal(size=(300, 4)).astype(np.float32)
    site = np.where(rng.random(300) < 0.7, "a", "b")
    return write_pool(tmp_path / "pool.parquet", X, y, extra={"site": site})


@pytest.fixture
def pool_writer():
    """The :func:`write_pool` helper, as a fixture."""
    return write_pool
