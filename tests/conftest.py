"""Fixtures shared by every test package: real ONNX models and real Parquet pools.

Nothing here is mocked: models are built with onnx.helper / skl2onnx, pools are written
with pyarrow into the test's temporary directory, and the references they are checked
against are plain numpy recomputations.
"""

from __future__ import annotations

import os
import signal

# A suite started in the background by a shell without job control (`pytest &` in a script)
# inherits SIGINT ignored, and so would every process it starts: the tests that stop a command
# with Ctrl-C would see it ignored.  Ctrl-C is Python's KeyboardInterrupt here, as in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Every Ray the tests start (local, multi-node, job-submission head) lives on 127.0.0.1 without
# token auth.  Ray reads these once per process, so one test session must use one setting for all.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest

from alscale.model.export import mlp_to_onnx

N_FEATURES = 8
N_CLASSES = 4


def mlp_weights(seed: int = 0, n_features: int = N_FEATURES, hidden: int = 16, n_classes: int = N_CLASSES):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(n_features, hidden)).astype(np.float32), rng.normal(size=(hidden, n_classes)).astype(np.float32)]
    biases = [rng.normal(size=hidden).astype(np.float32), rng.normal(size=n_classes).astype(np.float32)]
    return weights, biases


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory):
    """Build (and cache) a small real ONNX MLP: ``model_factory(seed=0, output="probabilities")``."""
    root = tmp_path_factory.mktemp("models")
    cache: dict = {}

    def build(seed: int = 0, output: str = "probabilities", n_features: int = N_FEATURES, n_classes: int = N_CLASSES, classes=None):
        key = (seed, output, n_features, n_classes, tuple(classes) if classes else None)
        if key not in cache:
            w, b = mlp_weights(seed, n_features, 16, n_classes)
            path = root / f"mlp-{seed}-{output}-{n_features}-{n_classes}-{len(cache)}.onnx"
            path.write_bytes(mlp_to_onnx(w, b, output=output, classes=classes))
            cache[key] = path
        return cache[key]

    return build


@pytest.fixture(scope="session")
def model_path(model_factory):
    return model_factory()


def read_pool_arrays(pool_dir) -> tuple[np.ndarray, np.ndarray]:
    """The whole pool as (ids, features): the single-process reference's view."""
    from alscale.pool.features import decode_features, detect_features

    table = pq.read_table(pool_dir)
    spec = detect_features(table.schema, "id")
    batches = table.to_batches()
    feats = np.concatenate([decode_features(b, spec) for b in batches]) if batches else np.empty((0, spec.width), np.float32)
    ids = table.column("id").to_numpy(zero_copy_only=False)
    if ids.dtype == object:
        ids = ids.astype(str)
    return ids, feats


def reference_probs(model, features: np.ndarray) -> np.ndarray:
    """Class probabilities from one onnxruntime session over the whole array."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = session.run(["probabilities" if "probabilities" in names else "logits"], {"features": features})[0]
    if "probabilities" not in names:
        z = out - out.max(axis=1, keepdims=True)
        out = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """A real local Ray for one test module (3 logical CPUs so 3 actors fit), or the one running."""
    import tempfile

    import ray

    if ray.is_initialized():
        yield
        return
    temp_dir = tempfile.mkdtemp(prefix="alscale-t-")  # short: Ray's socket paths have a length limit
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
        from alscale.engine.runtime import _remove_tree

        _remove_tree(temp_dir)


def write_pool(directory, X, ids=None, *, files=1, row_group_size=500, layout="binary", extra=None):
    """Write features ``X`` (n, d) as a pool under ``directory``; returns the directory."""
    import pyarrow as pa

    from alscale.datasets import feature_array

    directory.mkdir(parents=True, exist_ok=True)
    n = X.shape[0]
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids)
    bounds = np.linspace(0, n, files + 1).astype(int)
    for f, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        cols = {"id": pa.array(ids[lo:hi].tolist() if ids.dtype.kind in "UO" else ids[lo:hi])}
        cols.update(feature_array(X[lo:hi], layout))
        for name, values in (extra or {}).items():
            cols[name] = pa.array(values[lo:hi])
        pq.write_table(pa.table(cols), directory / f"part-{f}.parquet", row_group_size=row_group_size)
    return directory


def tied_features(n: int, d: int = N_FEATURES, distinct: int = 1500, seed: int = 0) -> np.ndarray:
    """Features where every row has exact copies elsewhere: scores tie, ids must break them."""
    base = np.random.default_rng(seed).normal(size=(distinct, d)).astype(np.float32) * 1.5
    return base[np.random.default_rng(seed + 1).integers(0, distinct, size=n)]
