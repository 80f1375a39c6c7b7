"""Helpers for the cluster tests: a tiny Parquet pool, a tiny ONNX model, a numpy reference,
and Ray head nodes on this machine (loopback only, own temp dirs, stopped by pid).

Ray 2.60 turns token authentication on by default; these clusters run with
``RAY_AUTH_MODE=disabled`` (conftest sets it before Ray starts) and only listen on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alscale.model.export import mlp_to_onnx

REPO = Path(__file__).resolve().parents[2]
N_ROWS, N_FEATURES, N_HIDDEN, N_CLASSES = 2400, 6, 12, 3
N_FILES, ROW_GROUP = 4, 150


# --------------------------------------------------------------------------- data


def write_pool(folder: Path, *, n_rows: int = N_ROWS, n_files: int = N_FILES, seed: int = 0,
               sizes: list[int] | None = None, row_group: int = ROW_GROUP, shuffle_ids: bool = False) -> Path:
    """Write Parquet files of ``id`` int64 and ``features`` fixed_size_list<float32>.

    ``n_rows`` split evenly over ``n_files``, or files of the given ``sizes``.  Ids increase
    through the pool, or come in a random order with ``shuffle_ids``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if sizes is not None:
        n_rows = sum(sizes)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, N_FEATURES)).astype(np.float32)
    ids = np.arange(n_rows, dtype=np.int64) * 7 + 11
    if shuffle_ids:
        ids = rng.permutation(ids)
    parts = (np.split(np.arange(n_rows), np.cumsum(sizes)[:-1]) if sizes is not None
             else np.array_split(np.arange(n_rows), n_files))
    for i, part in enumerate(parts):
        values = pa.array(x[part].ravel(), type=pa.float32())
        table = pa.table({
            "id": pa.array(ids[part]),
            "features": pa.FixedSizeListArray.from_arrays(values, N_FEATURES),
        })
        pq.write_table(table, folder / f"part-{i:03d}.parquet", row_group_size=row_group)
    return folder


def read_pool(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (ids (n,), features (n, d)) of a pool written by :func:`write_pool`."""
    table = pq.read_table(sorted(folder.glob("*.parquet")))
    ids = table["id"].to_numpy()
    feats = table["features"].combine_chunks().flatten().to_numpy().reshape(-1, N_FEATURES)
    return ids, feats


def model_params(seed: int = 1):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(scale=0.8, size=(N_FEATURES, N_HIDDEN)).astype(np.float32)
    b1 = rng.normal(scale=0.1, size=N_HIDDEN).astype(np.float32)
    w2 = rng.normal(scale=0.8, size=(N_HIDDEN, N_CLASSES)).astype(np.float32)
    b2 = rng.normal(scale=0.1, size=N_CLASSES).astype(np.float32)
    return [w1, w2], [b1, b2]


def write_model(path: Path, seed: int = 1) -> Path:
    weights, biases = model_params(seed)
    path.write_bytes(mlp_to_onnx(weights, biases, classes=["cat", "dog", "emu"]))
    return path


def reference_scores(x: np.ndarray, seed: int = 1) -> np.ndarray:
    """numpy recomputation of the model and the entropy strategy: scores (n,) float64."""
    (w1, w2), (b1, b2) = model_params(seed)
    h = np.maximum(x.astype(np.float64) @ w1 + b1, 0.0)
    z = h @ w2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1)


def read_pieces(pieces) -> tuple[np.ndarray, np.ndarray]:
    """(ids, features) of the given (path, row_group) pieces."""
    tables = [pq.ParquetFile(path).read_row_group(group) for path, group in pieces]
    table = pa.concat_tables(tables)
    feats = table["features"].combine_chunks().flatten().to_numpy().reshape(-1, N_FEATURES)
    return table["id"].to_numpy(), feats


def assert_matches_reference(batch, pool: Path | tuple, k: int) -> None:
    """The batch holds the k rows whose numpy entropies are the k best, in rank order.

    ``pool`` is a pool folder or an ``(ids, features)`` pair.  Scores agree to float32
    precision, so the check allows 1e-5 at the k-th boundary.
    """
    ids, x = read_pool(pool) if isinstance(pool, Path) else pool
    scores = reference_scores(x)
    got = batch.column("id").to_numpy()
    assert len(got) == k and len(set(got.tolist())) == k
    by_id = dict(zip(ids.tolist(), scores.tolist()))
    ref_scores = np.array([by_id[i] for i in got.tolist()])
    np.testing.assert_allclose(batch.column("score").to_numpy(), ref_scores, atol=1e-5)
    kth = np.sort(scores)[::-1][k - 1]
    assert ref_scores.min() >= kth - 1e-5
    assert np.all(np.diff(ref_scores) <= 1e-5)  # rank order follows the score


def corrupt_row_group(path: Path, row_group: int, column: int = 1) -> None:
    """Overwrite the data page header of one column chunk of one row group with garbage."""
    chunk = pq.ParquetFile(path).metadata.row_group(row_group).column(column)
    data = bytearray(path.read_bytes())
    offset = chunk.data_page_offset
    data[offset:offset + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- processes


RAY_TEST_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray 2.60 turns token auth on by default; these clusters are loopback-only and auth-free
    "RAY_AUTH_MODE": "disabled",
    # node addresses on 127.0.0.1 rather than the machine's network address
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


@contextmanager
def loopback_ray_env():
    """Set :data:`RAY_TEST_ENV` (and Ray's already-imported copy of the loopback switch) for a block."""
    from ray._private import ray_constants

    saved = {key: os.environ.get(key) for key in RAY_TEST_ENV}
    saved_switch = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(RAY_TEST_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_switch
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_under(marker: str):
    """psutil processes whose command line names ``marker`` (a temp dir), and their children."""
    import psutil

    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in arg for arg in proc.info["cmdline"] or ()):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(found.values())


def stop_processes(procs, timeout: float = 10.0) -> None:
    """SIGTERM the given processes, then SIGKILL what is left (only these pids)."""
    import psutil

    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


class HeadNode:
    """A ``ray start --head`` on loopback in its own temp dir; :meth:`stop` kills only its pids."""

    def __init__(self, temp_dir: Path, num_cpus: int = 2, env: dict | None = None, take_jobs: bool = True):
        self.temp_dir = temp_dir
        self.port, self.dashboard_port = free_port(), free_port()
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.gcs_address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **RAY_TEST_ENV, **(env or {}),
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        cmd = [
            str(Path(sys.executable).parent / "ray"), "start", "--head",
            "--node-ip-address", "127.0.0.1", "--port", str(self.port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
            "--ray-client-server-port", str(free_port()),
            "--temp-dir", str(temp_dir), "--num-cpus", str(num_cpus),
            "--include-dashboard", "true", "--disable-usage-stats",
        ]
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({result.returncode}): {result.stderr[-2000:]}")
        try:
            if take_jobs:  # (a head with token authentication would refuse this process's calls)
                self._wait_for_dashboard()
                self._wait_for_job_agent()
        except BaseException:  # the fixture never gets a node to stop: stop it here, or the whole head is left running
            self.stop()
            raise

    def _wait_for_dashboard(self, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.dashboard_url}/api/version", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the Ray dashboard at {self.dashboard_url} did not come up in {timeout}s")

    def _wait_for_job_agent(self, timeout: float = 120.0) -> None:
        """Wait until the head takes jobs: the dashboard answers before its job agent is up, and a
        submission meanwhile fails with "No available agent" (after 10 s: seen on a loaded machine)."""
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + timeout
        while True:
            try:
                JobSubmissionClient(self.dashboard_url).submit_job(entrypoint="true")
                return
            except Exception as exc:  # "No available agent", or a dashboard too busy to answer
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Ray head at {self.dashboard_url} took no job in {timeout}s: {exc}") from exc
                time.sleep(1.0)

    def stop(self) -> None:
        stop_processes(processes_under(str(self.temp_dir)))
