"""The job entrypoints without a cluster: argument handling, exit codes, the URI publish step."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.cluster.clusterkit import REPO


def load_job(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "jobs"))
    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def select_job(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return load_job("select_job", monkeypatch)


def test_unknown_config_key_exits_2_with_one_line(select_job, tmp_path, capsys):
    config = tmp_path / "select.toml"
    config.write_text('pool = "p"\nmodel = "m.onnx"\nstrategie = "entropy"\n')
    assert select_job.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("alscale: error: Unknown setting 'strategie'") and "Did you mean 'strategy'?" in err


def test_missing_config_and_bad_override_exit_2(select_job, tmp_path, capsys):
    assert select_job.main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert "Cannot read config file" in capsys.readouterr().err
    config = tmp_path / "select.toml"
    config.write_text('pool = "p"\nmodel = "m.onnx"\n')
    assert select_job.main(["--config", str(config), "--k", "0"]) == 2
    assert "The 'k' parameter must be an int >= 1. Got 0 instead." in capsys.readouterr().err


def test_existing_remote_output_is_refused_before_any_work(select_job, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{tmp_path / "no-pool"}"\nmodel = "m.onnx"\nout = "file://{tmp_path / "out"}"\n')
    assert select_job.main(["--config", str(config)]) == 2
    assert "exists already" in capsys.readouterr().err


def test_publish_copies_the_manifest_in_whole(select_job, tmp_path):
    from alscale.exceptions import OutputError

    local = tmp_path / "local"
    local.mkdir()
    (local / "manifest.json").write_text(json.dumps({"k": 3}))
    (local / "batch.parquet").write_bytes(b"PAR1-not-really")
    dest = tmp_path / "remote" / "round-1"
    select_job.publish(str(local), f"file://{dest}", force=False)
    assert sorted(p.name for p in dest.iterdir()) == ["batch.parquet", "manifest.json"]
    assert (dest / "batch.parquet").read_bytes() == b"PAR1-not-really"
    assert [p.name for p in dest.parent.iterdir()] == ["round-1"]  # no staging folder left

    with pytest.raises(OutputError, match="exists already"):
        select_job.publish(str(local), f"file://{dest}", force=False)
    (local / "manifest.json").write_text(json.dumps({"k": 4}))
    select_job.publish(str(local), f"file://{dest}", force=True)
    assert json.loads((dest / "manifest.json").read_text()) == {"k": 4}
    assert [p.name for p in dest.parent.iterdir()] == ["round-1"]


def test_loop_round_job_reports_a_missing_workspace(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    job = load_job("loop_round_job", monkeypatch)
    assert job.main(["--workspace", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alscale: error: Expected a workspace") and err.count("\n") == 1


def test_a_cluster_address_where_nothing_listens_exits_2(tmp_path):
    """``RAY_ADDRESS`` naming a port where nothing listens: one line and exit 2 in seconds, not minutes of retries."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{tmp_path / "pool"}"\nmodel = "m.onnx"\nout = "{tmp_path / "out"}"\n')
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "select_job.py"), "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"alscale: error: Cannot reach a Ray cluster at '127.0.0.1:{port}'"), proc.stderr


def test_a_job_without_out_is_refused_before_any_work(select_job, tmp_path, capsys):
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{tmp_path / "no-pool"}"\nmodel = "m.onnx"\n')
    assert select_job.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "The 'out' setting is required for a job" in err


def test_a_cluster_failure_exits_1_and_bad_input_2(monkeypatch, capsys):
    from alscale.exceptions import ClusterError, PoolError

    monkeypatch.syspath_prepend(str(REPO / "jobs"))
    from _common import run_job

    def lost():
        raise ClusterError("Ray failed: ActorDiedError: The actor died unexpectedly before finishing this task.")

    def bad():
        raise PoolError("Pool 'p' does not exist or holds no Parquet files.")

    assert run_job(lost, verbose=False) == 1
    assert capsys.readouterr().err == "alscale: job failed: Ray failed: ActorDiedError: The actor died unexpectedly before finishing this task.\n"
    assert run_job(bad, verbose=False) == 2
    assert capsys.readouterr().err.startswith("alscale: error: Pool 'p'")


def test_checkpoints_stay_until_the_manifest_is_published(select_job, data_dir, tmp_path, capsys):
    """A failed copy to the destination is retried without scoring again; the manifest names the destination."""
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{data_dir / "pool"}"\nmodel = "{data_dir / "model.onnx"}"\nk = 10\nactors = 2\n'
                      f'checkpoint_dir = "{tmp_path / "ck"}"\n')
    unwritable = "file:///proc/alscale-cannot-be-created/round-1"
    assert select_job.main(["--config", str(config), "--out", unwritable]) == 2
    assert "Cannot write the manifest" in capsys.readouterr().err
    assert list((tmp_path / "ck").glob("*/shard-*.npz"))  # the scoring is kept
    good = tmp_path / "remote" / "round-1"
    assert select_job.main(["--config", str(config), "--out", f"file://{good}"]) == 0
    data = json.loads((good / "manifest.json").read_text())
    assert data["counts"]["shards_resumed"] == data["counts"]["shards"] == 2  # nothing scored twice
    assert data["settings"]["out"] == f"file://{good}"
    assert not (tmp_path / "ck").exists()  # removed once published
