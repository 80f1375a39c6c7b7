"""Submit jobs/select_job.py to a real Ray head node on loopback, by CLI and by the job client.

The head node (``ray start --head`` in its own temp dir, own ports, usage stats and token auth
off) is shared by the module and stopped by pid at the end -- never ``ray stop``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from alscale.manifest import Manifest

from tests.cluster.clusterkit import REPO, assert_matches_reference

pytestmark = [pytest.mark.slow, pytest.mark.ray]

K = 25
# what the README's `ray job submit` leaves out of the uploaded working directory
EXCLUDES = [".venv", ".labelstudio-venv", ".git", "tests", "benchmarks", "*.parquet", "*.onnx"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def write_config(path: Path, data_dir: Path, out: str, k: int = K) -> Path:
    path.write_text(
        f'pool = "{data_dir / "pool"}"\n'
        f'model = "{data_dir / "model.onnx"}"\n'
        f'strategy = "entropy"\nk = {k}\nseed = 3\nactors = 2\nbatch_size = 100\n'
        f'out = "{out}"\n'
    )
    return path


def wait_for(client, job_id: str, timeout: float = 240.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        time.sleep(1.0)
    client.stop_job(job_id)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s:\n{client.get_job_logs(job_id)[-3000:]}")


def shard_actors(head_node) -> set[str]:
    """Ids of the shard actors the head node has seen: a job's selection ran on this cluster, not
    on a private local Ray of its own."""
    from ray.util.state import list_actors

    actors = list_actors(address=head_node.dashboard_url, filters=[("class_name", "=", "ShardWorker")],
                         limit=10_000, raise_on_missing_output=False)
    return {actor.actor_id for actor in actors}


def test_ray_job_submit_cli(head_node, data_dir, tmp_path):
    out = tmp_path / "batch"
    before = shard_actors(head_node)
    config = write_config(tmp_path / "select.toml", data_dir, str(out))
    cmd = [
        str(Path(sys.executable).parent / "ray"), "job", "submit",
        "--address", head_node.dashboard_url,
        "--working-dir", str(REPO),
        "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
        "--", sys.executable, "jobs/select_job.py", "--config", str(config),
    ]
    result = subprocess.run(cmd, env=head_node.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "succeeded" in result.stdout
    manifest = Manifest.read(out)
    assert manifest.data["k"] == K
    assert manifest.data["counts"]["rows_scored"] == 2400
    assert_matches_reference(manifest.batch, data_dir / "pool", K)
    assert len(shard_actors(head_node) - before) == 2  # actors = 2


def test_job_client_writes_to_a_uri_and_reports_errors(head_node, data_dir, tmp_path):
    from ray.job_submission import JobSubmissionClient

    workdir = tmp_path / "wd"  # a small working directory: the job entrypoints only
    shutil.copytree(REPO / "jobs", workdir / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    client = JobSubmissionClient(head_node.dashboard_url)

    remote = tmp_path / "remote"
    config = write_config(tmp_path / "select.toml", data_dir, f"file://{remote}/round-1")
    job_id = client.submit_job(
        entrypoint=f"{sys.executable} jobs/select_job.py --config {config}",
        runtime_env={"working_dir": str(workdir)},
    )
    status = wait_for(client, job_id)
    assert status == "SUCCEEDED", client.get_job_logs(job_id)[-4000:]
    # no staging folder left behind, and the checkpoints are gone once the manifest is safe
    assert sorted(p.name for p in remote.iterdir()) == ["round-1"]
    manifest = Manifest.read(remote / "round-1")
    assert_matches_reference(manifest.batch, data_dir / "pool", K)

    # an existing output is refused: exit 2 and one line naming it
    job_id = client.submit_job(
        entrypoint=f"{sys.executable} jobs/select_job.py --config {config}",
        runtime_env={"working_dir": str(workdir)},
    )
    assert wait_for(client, job_id) == "FAILED"
    info = client.get_job_info(job_id)
    assert info.driver_exit_code == 2
    errors = [line for line in client.get_job_logs(job_id).splitlines() if line.startswith("alscale: error:")]
    assert len(errors) == 1 and "round-1" in errors[0] and "exists" in errors[0], errors
    assert Manifest.read(remote / "round-1").batch.equals(manifest.batch)

    # a bad setting: exit 2 before any work
    job_id = client.submit_job(
        entrypoint=f"{sys.executable} jobs/select_job.py --config {config} --k 0 --force",
        runtime_env={"working_dir": str(workdir)},
    )
    assert wait_for(client, job_id) == "FAILED"
    assert client.get_job_info(job_id).driver_exit_code == 2
    assert "The 'k' parameter must be an int >= 1" in client.get_job_logs(job_id)


def test_loop_round_job_runs_rounds_on_the_cluster(head_node, tmp_path):
    """jobs/loop_round_job.py: the seed round, then a model round whose selection runs on the cluster."""
    import numpy as np
    from ray.job_submission import JobSubmissionClient

    from alscale.loop import _pool
    from alscale.loop.train import predict_onnx
    from alscale.loop.workspace import Workspace
    from alscale.strategies.uncertainty import margin
    from tests.loop.conftest import write_pool as write_labeled_pool

    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0, 0], [4, 4, 0, 0], [0, 4, 4, 0]], dtype=np.float32)
    y = np.repeat(np.arange(3), 100)
    pool = write_labeled_pool(tmp_path / "pool.parquet", centers[y] + rng.normal(size=(300, 4)), y)
    ws = Workspace.create(tmp_path / "ws", pool=pool, label_column="label",
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 15, "seed": 3})
    workdir = tmp_path / "wd"
    shutil.copytree(REPO / "jobs", workdir / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    client = JobSubmissionClient(head_node.dashboard_url)

    def round_job(*flags: str) -> dict:
        job_id = client.submit_job(
            entrypoint=f"{sys.executable} jobs/loop_round_job.py --workspace {ws.path} {' '.join(flags)}",
            runtime_env={"working_dir": str(workdir)},
        )
        logs = lambda: client.get_job_logs(job_id)  # noqa: E731
        assert wait_for(client, job_id) == "SUCCEEDED", logs()[-4000:]
        return json.loads(logs().strip().splitlines()[-1])

    seed_round = round_job()
    assert seed_round["round"] == 0 and seed_round["kind"] == "seed"
    seed_ids = pq.read_table(ws.path / "rounds/000/batch/batch.parquet").column("id").to_pylist()
    labels = _pool.read_columns(pool, ["label"], ids=seed_ids)
    ws.record_labels({"id": i, "label": lab, "source": "oracle"}
                     for i, lab in zip(labels.column("id").to_pylist(), labels.column("label").to_pylist()))

    before = shard_actors(head_node)
    model_round = round_job("--strategy", "margin", "--actors", "2")
    assert len(shard_actors(head_node) - before) == 2
    assert model_round["round"] == 1 and model_round["selected"] == 15
    picked = pq.read_table(ws.path / "rounds/001/batch/batch.parquet").column("id").to_pylist()
    # reference: margin over every selectable row with the round's model, in this process
    ids, features = _pool.read_features(pool, np.arange(300))
    probs, _ = predict_onnx(ws.path / "rounds/001/model.onnx", features)
    excluded = set(seed_ids) | set(ws.evaluation_ids().tolist())
    candidates = np.array([i for i in ids.tolist() if i not in excluded])
    scores = margin(probs[candidates]).astype(np.float64)
    assert set(picked) == set(candidates[np.lexsort((candidates, -scores))[:15]].tolist())


def test_joining_a_token_cluster_without_its_token_is_one_line(data_dir, tmp_path):
    """Ray's C++ client logs a line a second for ~20 s before the driver hears of the refusal:
    the user sees alscale's one line, which names what is needed, and nothing of Ray's."""
    import os
    import tempfile

    from tests.cluster.clusterkit import HeadNode

    temp_dir = Path(tempfile.mkdtemp(prefix="alscale-ray-"))
    head = HeadNode(temp_dir, num_cpus=1, env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "a" * 32}, take_jobs=False)
    try:
        exe = Path(sys.executable).parent / "alscale"
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        proc = subprocess.run([str(exe), "select", "--pool", str(data_dir / "pool"), "--model", str(data_dir / "model.onnx"), "--k", "5",
                               "--address", head.gcs_address, "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=180, env=env)
    finally:
        head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"alscale: error: Cannot connect to a Ray cluster at '{head.gcs_address}'"), proc.stderr[-3000:]
    assert "expected RAY_AUTH_MODE=token" in proc.stderr and not (tmp_path / "out").exists()


def test_a_working_dir_zipped_at_a_uri_refuses_a_relative_output(head_node, data_dir, tmp_path):
    """`--working-dir file:///x/pkg.zip` (s3://, gs://, https:// alike): Ray unpacks the zip into
    runtime_resources/working_dir_files/file_<hash>/, deleted with the job; a relative `out` or `--workspace` went
    there and the job reported success."""
    import zipfile

    from ray.job_submission import JobSubmissionClient

    package = tmp_path / "pkg.zip"
    with zipfile.ZipFile(package, "w") as zf:
        for path in sorted((REPO / "jobs").glob("*.py")):
            zf.write(path, f"jobs/{path.name}")
        zf.writestr("select.toml", write_config(tmp_path / "select.toml", data_dir, "batches/round-1").read_text())
    client = JobSubmissionClient(head_node.dashboard_url)

    for entrypoint, name in ((f"{sys.executable} jobs/select_job.py --config select.toml", "out"),
                             (f"{sys.executable} jobs/loop_round_job.py --workspace ws", "workspace")):
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": package.as_uri()})
        logs = client.get_job_logs
        assert wait_for(client, job_id) == "FAILED", logs(job_id)[-4000:]
        assert client.get_job_info(job_id).driver_exit_code == 2
        errors = [line for line in logs(job_id).splitlines() if line.startswith("alscale: error:")]
        assert len(errors) == 1 and f"for {name!r} in a job submitted with --working-dir" in errors[0], logs(job_id)[-4000:]
        assert "in that copy" in errors[0]
    copies = list(Path(head_node.temp_dir).glob("session_*/runtime_resources/working_dir_files/file_*"))
    assert copies and not [p for copy in copies for p in (copy / "batches", copy / "ws") if p.exists()]
