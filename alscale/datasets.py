"""Synthetic pools and models for the demo, the benchmarks and the tests.

:func:`make_pool` writes a Gaussian-mixture pool to Parquet in chunks (memory bounded by one
chunk, whatever the size); :func:`make_model` trains a small MLP on a labeled sample of the
same mixture and exports it to ONNX with probabilities and an embedding output;
:func:`random_mlp` builds an untrained network of any shape (for throughput benchmarks).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alscale._atomic import atomic_write_bytes
from alscale.model.export import mlp_to_onnx, sklearn_to_onnx

__all__ = ["LAYOUTS", "feature_array", "make_model", "make_pool", "mixture", "random_mlp"]

LAYOUTS = ("binary", "list", "columns")


def mixture(n: int, n_features: int, n_classes: int, seed: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start .. start+n`` of a deterministic Gaussian mixture.

    Returns
    -------
    X : ndarray of shape (n, n_features), float32
    y : ndarray of shape (n,), int64
    """
    centers = np.random.default_rng(seed).normal(scale=1.5, size=(n_classes, n_features)).astype(np.float32)
    rng = np.random.default_rng([seed, start])
    y = rng.integers(0, n_classes, size=n)
    X = centers[y] + rng.normal(size=(n, n_features)).astype(np.float32)
    return X.astype(np.float32), y.astype(np.int64)


def feature_array(X: np.ndarray, layout: str) -> dict[str, pa.Array]:
    """Arrow column(s) for float32 features ``X`` (n, d) in the given layout."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    if layout == "binary":
        buf = pa.py_buffer(X.tobytes())
        return {"features": pa.Array.from_buffers(pa.binary(4 * d), n, [None, buf])}
    if layout == "list":
        return {"features": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), d)}
    if layout == "columns":
        return {f"f{j}": pa.array(X[:, j]) for j in range(d)}
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def make_pool(
    path: str | os.PathLike,
    n_rows: int,
    *,
    n_features: int = 32,
    n_classes: int = 10,
    layout: str = "binary",
    files: int = 1,
    row_group_size: int = 65_536,
    seed: int = 0,
    with_labels: bool = False,
    string_ids: bool = False,
    compression: str | None = "none",
) -> Path:
    """Write a synthetic pool: ``files`` Parquet files under directory ``path``.

    Parameters
    ----------
    path : path-like
        Directory to create (files ``part-00000.parquet``, ...).
    n_rows : int
    layout : {"binary", "list", "columns"}
        Feature layout (see :mod:`alscale.pool.features`).
    with_labels : bool
        Add the true class as a ``label`` column (an oracle for simulations).
    string_ids : bool
        Ids as strings ``"row-<n>"`` instead of int64.

    Returns
    -------
    pathlib.Path
        The directory.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    per_file = -(-n_rows // files)
    chunk = max(1, min(row_group_size, 262_144))
    row = 0
    for f in range(files):
        end = min(n_rows, row + per_file)
        writer = None
        tmp = path / f".part-{f:05d}.parquet.tmp"
        try:
            while row < end:
                n = min(chunk, end - row)
                X, y = mixture(n, n_features, n_classes, seed, start=row)
                ids = np.arange(row, row + n, dtype=np.int64)
                cols = {"id": pa.array([f"row-{i}" for i in ids]) if string_ids else pa.array(ids)}
                cols.update(feature_array(X, layout))
                if with_labels:
                    cols["label"] = pa.array(y)
                table = pa.table(cols)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression=compression)
                writer.write_table(table, row_group_size=row_group_size)
                row += n
        finally:
            if writer is not None:
                writer.close()
        if tmp.exists():
            os.replace(tmp, path / f"part-{f:05d}.parquet")
    return path


def make_model(
    path: str | os.PathLike,
    *,
    n_features: int = 32,
    n_classes: int = 10,
    hidden: int = 64,
    n_train: int = 2000,
    seed: int = 0,
    output: str = "probabilities",
) -> Path:
    """Train a small MLP on a labeled sample of :func:`mixture` and export it to ONNX."""
    from sklearn.neural_network import MLPClassifier

    # train on rows far beyond any pool's ids, so the model has not seen pool rows
    X, y = mixture(n_train, n_features, n_classes, seed, start=10**12)
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=60, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    path = Path(path)
    atomic_write_bytes(path, sklearn_to_onnx(clf, output=output))
    return path


def random_mlp(path: str | os.PathLike, sizes: tuple[int, ...] = (64, 256, 10), seed: int = 0, output: str = "probabilities") -> Path:
    """An untrained MLP of the given layer sizes (e.g. 64-256-10), exported to ONNX."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(scale=1 / np.sqrt(a), size=(a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(scale=0.1, size=b).astype(np.float32) for b in sizes[1:]]
    path = Path(path)
    atomic_write_bytes(path, mlp_to_onnx(weights, biases, output=output))
    return path
