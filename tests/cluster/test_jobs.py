"""The job entrypoints without a cluster: argument handling, exit codes, the URI publish step."""

from __future__ import annotations

import importlib.util
import json
import os

import pyarrow.fs as pafs
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


def test_checkpoints_stay_until_the_manifest_is_published(select_job, data_dir, tmp_path, capsys, monkeypatch):
    """A failed copy to the destination is retried without scoring again; the manifest names the destination."""
    # a destination that fails only at the copy (credentials that expire during the scan, a full disk): the check
    # before the work is passed over, so this one fails where a publish would
    monkeypatch.setattr(select_job, "_check_writable", lambda *args: None)
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
    assert data["checkpoints"] is None and data["settings"]["keep_checkpoints"] is False  # so not recorded as kept
    assert data["settings"]["checkpoint_dir"] == str(tmp_path / "ck")


def test_usage_errors_are_one_line_and_exit_2(monkeypatch, capsys):
    select_job = load_job("select_job", monkeypatch)
    with pytest.raises(SystemExit) as info:
        select_job.main(["--config", "select.toml", "--k", "ten"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "alscale: error: argument --k: invalid int value: 'ten' (see select_job.py --help)\n"
    loop_round_job = load_job("loop_round_job", monkeypatch)
    with pytest.raises(SystemExit) as info:
        loop_round_job.main([])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("alscale: error: the following arguments are required: --workspace")


def test_force_replaces_an_earlier_manifest_only(select_job, tmp_path, capsys):
    """As for a local output: --force never removes a file or a folder of other files at the URI."""
    from alscale.exceptions import OutputError

    local = tmp_path / "local"
    local.mkdir()
    (local / "manifest.json").write_text(json.dumps({"k": 3}))
    others = tmp_path / "data"
    others.mkdir()
    (others / "part-000.parquet").write_bytes(b"rows")
    with pytest.raises(OutputError, match=r"holds files of its own \(part-000.parquet\)"):
        select_job.publish(str(local), f"file://{others}", force=True)
    (others / "manifest.json").write_text("{}")  # an earlier output with a file of the user's beside it: refused too
    with pytest.raises(OutputError, match=r"holds files of its own \(part-000.parquet\)"):
        select_job.publish(str(local), f"file://{others}", force=True)
    (others / "manifest.json").unlink()
    assert [p.name for p in others.iterdir()] == ["part-000.parquet"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("notes")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        select_job.publish(str(local), f"file://{a_file}", force=True)
    assert a_file.read_text() == "notes"
    (tmp_path / "empty").mkdir()
    select_job.publish(str(local), f"file://{tmp_path / 'empty'}", force=True)
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["manifest.json"]
    cut_short = tmp_path / "cut-short"  # a copy into an object store killed before manifest.json
    cut_short.mkdir()
    (cut_short / "batch.parquet").write_bytes(b"half")
    select_job.publish(str(local), f"file://{cut_short}", force=True)
    assert [p.name for p in cut_short.iterdir()] == ["manifest.json"]

    # refused before any work: the job names the output, not the pool it never opened
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{tmp_path / "no-pool"}"\nmodel = "m.onnx"\nout = "file://{others}"\n')
    assert select_job.main(["--config", str(config), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds files of its own" in err
    assert [p.name for p in others.iterdir()] == ["part-000.parquet"]


class NoFolderRename(pafs.FileSystemHandler):
    """The local filesystem as S3 and GCS behave: no folder is renamed, and a file is written
    whether its folder exists or not.  Copies into ``fail_in`` of a file named ``fail_on`` fail;
    ``copied`` records the copies made there, in order."""

    def __init__(self, fail_in: str = "", fail_on: str = ""):
        self.fs = pafs.LocalFileSystem()
        self.fail_in, self.fail_on, self.copied = fail_in, fail_on, []

    def _copy_into(self, dest):
        if self.fail_in and dest.startswith(self.fail_in + "/"):
            if dest.endswith("/" + self.fail_on):
                raise OSError(f"connection reset while writing {dest}")
            self.copied.append(dest[len(self.fail_in) + 1:])
        self.fs.create_dir(os.path.dirname(dest), recursive=True)

    def get_type_name(self):
        return "no-folder-rename"

    def equals(self, other):
        return other is self

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("not here")

    def delete_file(self, path):
        self.fs.delete_file(path)

    def move(self, src, dest):
        if self.fs.get_file_info(src).type == pafs.FileType.Directory:
            raise NotImplementedError("moving folders is not supported")
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self._copy_into(dest)
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        return self.fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        self._copy_into(path)
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path, metadata=metadata)


def test_publish_without_a_folder_rename(select_job, tmp_path, monkeypatch):
    """S3 and GCS rename no folders: the files go in one by one, manifest.json last, and a copy
    that fails half-way leaves nothing behind to block the next attempt."""
    from alscale.exceptions import OutputError

    local = tmp_path / "local"
    local.mkdir()
    (local / "manifest.json").write_text(json.dumps({"k": 3}))
    (local / "batch.parquet").write_bytes(b"PAR1-not-really")
    dest = tmp_path / "remote" / "round-1"
    handler = NoFolderRename(fail_in=str(dest), fail_on="manifest.json")
    monkeypatch.setattr(select_job, "_filesystem", lambda uri: (pafs.PyFileSystem(handler), str(dest)))

    with pytest.raises(OutputError, match="Cannot write the manifest.*connection reset"):
        select_job.publish(str(local), "s3://bucket/round-1", force=False)
    assert list(dest.parent.iterdir()) == []  # no partial batch, no staging folder

    handler.fail_on, handler.copied = "", []
    select_job.publish(str(local), "s3://bucket/round-1", force=False)
    assert handler.copied[-1] == "manifest.json" and sorted(handler.copied) == ["batch.parquet", "manifest.json"]
    assert (dest / "batch.parquet").read_bytes() == b"PAR1-not-really"
    assert [p.name for p in dest.parent.iterdir()] == ["round-1"]


def test_in_a_submitted_working_dir_relative_outputs_and_missing_inputs_are_refused(select_job, tmp_path, monkeypatch, capsys):
    """`ray job submit --working-dir .` runs the job in Ray's copy of the folder: a relative out would be lost with it."""
    package = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123abcd"
    (package / "data").mkdir(parents=True)
    (package / "data" / "small.parquet").write_bytes(b"uploaded with the folder")
    monkeypatch.chdir(package)
    config = package / "select.toml"
    config.write_text('pool = "data/pool"\nmodel = "model.onnx"\nout = "/abs/out"\n')
    assert select_job.main(["--config", "select.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Expected an absolute path or a URI for 'pool' in a job submitted with --working-dir" in err
    assert "holds nothing at 'data/pool' (left out by the submit's excludes?)" in err
    config.write_text('pool = "pool/*.parquet"\nmodel = "model.onnx"\nout = "/abs/out"\n')  # a glob: the same refusal
    assert select_job.main(["--config", "select.toml"]) == 2
    assert "holds nothing at 'pool/*.parquet' (left out by the submit's excludes?)" in capsys.readouterr().err
    config.write_text(f'pool = "data/small.parquet"\nmodel = "{tmp_path / "m.onnx"}"\nout = "batches/round-1"\n')
    assert select_job.main(["--config", "select.toml"]) == 2
    err = capsys.readouterr().err
    assert ("for 'out' in a job submitted with --working-dir: the job runs in Ray's copy of that folder, deleted after it. "
            "Got 'batches/round-1', in that copy.") in err
    assert not (package / "batches").exists()
    loop_job = load_job("loop_round_job", monkeypatch)
    assert loop_job.main(["--workspace", "ws"]) == 2
    assert "for 'workspace' in a job submitted with --working-dir" in capsys.readouterr().err
    # outside such a copy (KubeRay, a job without --working-dir) relative paths are the driver's business, as before
    monkeypatch.chdir(tmp_path)
    config.write_text('pool = "data/pool"\nmodel = "model.onnx"\nout = "batches/round-1"\n')
    assert select_job.main(["--config", str(config)]) == 2
    assert "in a job submitted" not in capsys.readouterr().err


@pytest.mark.parametrize("job", ["select_job", "loop_round_job"])
def test_a_python_without_alscales_dependencies_is_one_line(tmp_path, job):
    """`ray job submit --working-dir` ships the code, not numpy or pyarrow: a node's bare Python says so in one line."""
    import subprocess
    import sys

    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{tmp_path / "pool"}"\nmodel = "m.onnx"\nout = "{tmp_path / "out"}"\n')
    args = ["--config", str(config)] if job == "select_job" else ["--workspace", str(tmp_path / "ws")]
    # -S: no site-packages (no numpy, pyarrow, ...); alscale's own code is found as the working directory's
    proc = subprocess.run([sys.executable, "-S", str(REPO / "jobs" / f"{job}.py"), *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "")}, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(
        f"alscale: error: Expected alscale's dependencies in the cluster's Python ({sys.executable}). Got ModuleNotFoundError: "), proc.stderr


# --- 2026-12-08 review: an unwritable URI output is found before the scan; a stopped job says so in one line ------

def test_a_uri_output_that_cannot_be_written_is_refused_before_any_work(select_job, tmp_path, capsys):
    """A file where a folder should be (or no permission) was found only after the whole scan, at publish."""
    (tmp_path / "a-file").write_text("x")
    for uri in (f"file://{tmp_path / 'a-file' / 'round-1'}", "file:///proc/alscale-nowhere/round-1"):
        config = tmp_path / "select.toml"
        config.write_text(f'pool = "{tmp_path / "no-pool"}"\nmodel = "m.onnx"\nout = "{uri}"\n')
        assert select_job.main(["--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"alscale: error: Cannot write output {uri!r} (checked before any work): "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "select.toml"]
    fresh = tmp_path / "new" / "deep" / "out"  # missing folders are made, and the check leaves nothing in them
    config.write_text(f'pool = "{tmp_path / "no-pool"}"\nmodel = "m.onnx"\nout = "file://{fresh}"\n')
    assert select_job.main(["--config", str(config)]) == 2
    assert "Cannot write output" not in capsys.readouterr().err and list(fresh.parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stopped_job_exits_130_with_one_line_and_leaves_no_output(tmp_path, model_path, sig):
    """``ray job stop`` and KubeRay send SIGTERM: the job printed nothing (or Ray's C++ stack dump) and exited 1 or 134;
    Ctrl-C gave a 46-line traceback."""
    import glob
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    from tests.conftest import tied_features, write_pool

    pool = write_pool(tmp_path / "pool", tied_features(200_000), files=1, row_group_size=20_000)
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{pool}"\nmodel = "{model_path}"\nk = 10\nactors = 1\nbatch_size = 1\n'  # ~10 s of scan
                      f'out = "{tmp_path / "out"}"\n')
    private_tmp = tempfile.mkdtemp(prefix="alscale-t-")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        proc = subprocess.Popen([sys.executable, str(REPO / "jobs" / "select_job.py"), "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**env, "TMPDIR": private_tmp})
        deadline = time.monotonic() + 120
        driver_log = os.path.join(private_tmp, "alscale-ray-*", "session_*", "logs", f"python-core-driver-*_{proc.pid}.log")
        while not glob.glob(driver_log) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # ray.init has returned: the driver's core worker is connected
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and err.strip().splitlines()[-1] == "alscale: interrupted", err[-2000:]
        assert "Traceback" not in err and "SIGTERM received" not in err, err[-2000:]
        assert not (tmp_path / "out").exists()
        assert glob.glob(os.path.join(private_tmp, "alscale-ray-*")) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(private_tmp, ignore_errors=True)


# --- 2026-12-08 review: a working dir zipped at a URI is Ray's copy too; publish races; cut-short copies; manifest record --


def test_ray_copies_of_working_dirs_zipped_at_uris_are_recognised(monkeypatch, tmp_path):
    """Ray unpacks a zip at a URI into working_dir_files/<scheme>_<sha1>/, a folder upload into _ray_pkg_<hash>/:
    only the second was recognised, so a relative output went into a copy deleted with the job."""
    monkeypatch.syspath_prepend(str(REPO / "jobs"))
    from _common import submitted_working_dir

    files = tmp_path / "session_2026-12-08_03-10-00_000000_1" / "runtime_resources" / "working_dir_files"
    for package in ("_ray_pkg_0123abcd", "file_6f1ed002ab5595859014ebf0951522d9", "s3_2b5e0c3d9a", "gs_77aa", "https_0c9d7e"):
        (files / package / "jobs").mkdir(parents=True)
        assert submitted_working_dir(str(files / package)) == str(files / package)
        assert submitted_working_dir(str(files / package / "jobs")) == str(files / package)  # the copy's root, wherever in it
    # a folder of that name elsewhere, or a local:// working dir (used in place, not a copy): nothing to refuse
    for elsewhere in (tmp_path / "working_dir_files" / "file_abc", tmp_path / "runtime_resources" / "other" / "file_abc",
                      tmp_path / "image" / "app"):
        elsewhere.mkdir(parents=True)
        assert submitted_working_dir(str(elsewhere)) is None
    assert submitted_working_dir(str(files)) is None  # the folder of copies itself is no copy


def test_in_a_working_dir_zipped_at_a_uri_relative_outputs_are_refused(select_job, tmp_path, monkeypatch, capsys):
    """`--working-dir file:///x/pkg.zip` (or s3://, gs://, https://; a RayJob's runtimeEnvYAML working_dir): the job ran in
    Ray's copy under working_dir_files/file_<hash>/, wrote `out = "batches/round-1"` there and reported success."""
    package = tmp_path / "runtime_resources" / "working_dir_files" / "https_9a3b0d6c1e"
    package.mkdir(parents=True)
    monkeypatch.chdir(package)
    config = package / "select.toml"
    config.write_text(f'pool = "{tmp_path / "pool"}"\nmodel = "{tmp_path / "m.onnx"}"\nout = "batches/round-1"\n')
    assert select_job.main(["--config", "select.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Got 'batches/round-1', in that copy." in err
    assert not (package / "batches").exists()
    loop_job = load_job("loop_round_job", monkeypatch)
    assert loop_job.main(["--workspace", "ws"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "for 'workspace' in a job submitted with --working-dir" in err


def _local_manifest(tmp_path, run: str):
    local = tmp_path / f"local-{run}"
    local.mkdir()
    (local / "manifest.json").write_text(json.dumps({"run": run}))
    (local / "batch.parquet").write_bytes(f"PAR1-{run}".encode())
    return local


def test_an_output_published_by_another_run_meanwhile_is_kept(select_job, tmp_path, monkeypatch):
    """Without --force, publish() deleted an output that another run (the same job submitted twice) published after
    this run's check, and put its own in place; where no folder is renamed it copied into that output."""
    from alscale.exceptions import OutputError

    mine = _local_manifest(tmp_path, "mine")
    dest = tmp_path / "remote" / "round-1"
    real_copy = pafs.copy_files

    def other_run_publishes_while_this_one_stages(*args, **kwargs):
        dest.mkdir(parents=True)
        (dest / "manifest.json").write_text(json.dumps({"run": "other"}))
        (dest / "batch.parquet").write_bytes(b"PAR1-other")
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(pafs, "copy_files", other_run_publishes_while_this_one_stages)
    with pytest.raises(OutputError) as info:
        select_job.publish(str(mine), f"file://{dest}", force=False, checkpoints=f"file://{dest}.checkpoints/abc")
    assert str(info.value) == (
        f"Output 'file://{dest}' was written by another run while this one ran. This run's checkpoints stay in "
        f"'file://{dest}.checkpoints/abc': run it again with --force to replace that output from them (nothing is scored again), "
        "or delete them.")
    assert json.loads((dest / "manifest.json").read_text()) == {"run": "other"}
    assert (dest / "batch.parquet").read_bytes() == b"PAR1-other"
    assert [p.name for p in dest.parent.iterdir()] == ["round-1"]  # the staging folder is gone
    monkeypatch.setattr(pafs, "copy_files", real_copy)
    select_job.publish(str(mine), f"file://{dest}", force=True)  # what the error says to do
    assert json.loads((dest / "manifest.json").read_text()) == {"run": "mine"}


def test_without_a_folder_rename_an_output_published_meanwhile_is_never_copied_into(select_job, tmp_path, monkeypatch):
    """S3, GCS: the other run's output lands between the last look and the copy; the files of both runs were mixed."""
    from alscale.exceptions import OutputError

    mine = _local_manifest(tmp_path, "mine")
    dest = tmp_path / "remote" / "round-1"

    class OtherRunLandsFirst(NoFolderRename):
        def move(self, src, dest_path):
            if dest_path == str(dest) and not dest.exists():
                dest.mkdir()
                (dest / "manifest.json").write_text(json.dumps({"run": "other"}))
                (dest / "batch.parquet").write_bytes(b"PAR1-other")
            super().move(src, dest_path)

    handler = OtherRunLandsFirst()
    monkeypatch.setattr(select_job, "_filesystem", lambda uri: (pafs.PyFileSystem(handler), str(dest)))
    with pytest.raises(OutputError, match=r"^Output 's3://bucket/round-1' was written by another run while this one ran; "
                                          r"run it again with --force to replace it\.$"):
        select_job.publish(str(mine), "s3://bucket/round-1", force=False)
    assert json.loads((dest / "manifest.json").read_text()) == {"run": "other"}
    assert (dest / "batch.parquet").read_bytes() == b"PAR1-other"
    assert [p.name for p in dest.parent.iterdir()] == ["round-1"]


def test_a_job_that_finds_its_output_written_meanwhile_keeps_its_checkpoints(select_job, data_dir, tmp_path, capsys, monkeypatch):
    """The whole job: exit 2, one line naming the checkpoints; --force then publishes from them without scoring again."""
    dest = tmp_path / "remote" / "round-1"
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{data_dir / "pool"}"\nmodel = "{data_dir / "model.onnx"}"\nk = 10\nactors = 2\n'
                      f'out = "file://{dest}"\n')
    record = select_job._record_destination

    def other_run_publishes(*args):  # after this run's check and scan, before its publish
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "manifest.json").write_text(json.dumps({"run": "other"}))
        return record(*args)

    monkeypatch.setattr(select_job, "_record_destination", other_run_publishes)
    assert select_job.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    checkpoints = sorted((tmp_path / "remote" / "round-1.checkpoints").iterdir())
    assert len(checkpoints) == 1 and list(checkpoints[0].glob("shard-*.npz"))
    assert err.count("\n") == 1 and err.startswith(f"alscale: error: Output 'file://{dest}' was written by another run"), err
    assert f"checkpoints stay in 'file://{checkpoints[0]}'" in err
    assert json.loads((dest / "manifest.json").read_text()) == {"run": "other"}
    monkeypatch.setattr(select_job, "_record_destination", record)
    assert select_job.main(["--config", str(config), "--force"]) == 0
    data = json.loads((dest / "manifest.json").read_text())
    assert data["counts"]["shards_resumed"] == data["counts"]["shards"] == 2
    assert sorted(p.name for p in dest.parent.iterdir()) == ["round-1"]


KILLED_DURING_THE_COPY = '''
import importlib.util, json, os, sys
sys.path[:0] = [{repo!r}, {jobs!r}]
import pyarrow.fs as pafs
from tests.cluster.test_jobs import NoFolderRename
spec = importlib.util.spec_from_file_location("select_job", {script!r})
job = importlib.util.module_from_spec(spec)
spec.loader.exec_module(job)

class KilledBeforeTheManifest(NoFolderRename):
    def copy_file(self, src, dest):
        if dest == {dest!r} + "/manifest.json":
            os._exit(137)  # as SIGKILL (OOM, a lost node, a deadline's grace run out) between the two copies
        super().copy_file(src, dest)

job._filesystem = lambda uri: (pafs.PyFileSystem(KilledBeforeTheManifest()), {dest!r})
job.publish({local!r}, "s3://bucket/round-1", force=False)
'''


def kill_during_the_copy(local, dest) -> None:
    """Publish ``local`` to ``dest`` as to S3 in a process that dies between batch.parquet and manifest.json."""
    import subprocess
    import sys

    program = KILLED_DURING_THE_COPY.format(repo=str(REPO), jobs=str(REPO / "jobs"), script=str(REPO / "jobs" / "select_job.py"),
                                            dest=str(dest), local=str(local))
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]


def test_a_copy_cut_short_by_a_killed_job_does_not_block_the_retry(select_job, tmp_path, monkeypatch):
    """A job killed while copying to S3/GCS left round-1/batch.parquet (no manifest.json) and round-1.partial-<id>/;
    the retry without --force (a RayJob's backoffLimit) was refused: 'exists already; pass --force'."""
    mine = _local_manifest(tmp_path, "mine")
    dest = tmp_path / "remote" / "round-1"
    kill_during_the_copy(mine, dest)
    left = sorted(p.name for p in dest.parent.iterdir())
    assert [p.name for p in dest.iterdir()] == ["batch.parquet"] and len(left) == 2 and left[1].startswith("round-1.partial-")

    handler = NoFolderRename()
    monkeypatch.setattr(select_job, "_filesystem", lambda uri: (pafs.PyFileSystem(handler), str(dest)))
    select_job.publish(str(mine), "s3://bucket/round-1", force=False)
    assert sorted(p.name for p in dest.iterdir()) == ["batch.parquet", "manifest.json"]
    assert json.loads((dest / "manifest.json").read_text()) == {"run": "mine"}
    # a cut-short copy is no output; a finished one still is
    from alscale.exceptions import OutputError
    with pytest.raises(OutputError, match="exists already; pass --force"):
        select_job.publish(str(mine), "s3://bucket/round-1", force=False)


def test_the_retry_of_a_killed_job_publishes_and_sweeps_what_the_killed_one_left(select_job, data_dir, tmp_path, capsys):
    """The whole retry, no --force: the cut-short copy is replaced, the killed attempt's staging and check folders go,
    folders of other names stay; the manifest records the user's checkpoint settings, not the job's own."""
    dest = tmp_path / "remote" / "round-1"
    kill_during_the_copy(_local_manifest(tmp_path, "killed"), dest)
    (dest.parent / "round-1.write-check-0123456789ab").mkdir()  # a check before the work, killed too
    (dest.parent / "round-1.write-check-0123456789ab" / "write-check").write_text("alscale")
    not_ours = ["round-1.partial-mine", "round-10.partial-0123456789ab", "round-1.partial-0123456789ab.bak"]
    for name in not_ours:
        (dest.parent / name).mkdir()
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{data_dir / "pool"}"\nmodel = "{data_dir / "model.onnx"}"\nk = 10\nactors = 2\n'
                      f'out = "file://{dest}"\n')
    assert select_job.main(["--config", str(config)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted(["round-1", *not_ours])
    assert sorted(p.name for p in dest.iterdir()) == ["batch.parquet", "manifest.json"]
    data = json.loads((dest / "manifest.json").read_text())
    assert data["k"] == 10 and data["settings"]["out"] == f"file://{dest}"
    # the job keeps checkpoints in <out>.checkpoints until the manifest is published, then removes them: none recorded
    assert data["checkpoints"] is None
    assert data["settings"]["keep_checkpoints"] is False and data["settings"]["checkpoint_dir"] is None


def test_kept_checkpoints_are_recorded_where_they_are(select_job, data_dir, tmp_path):
    dest = tmp_path / "remote" / "round-1"
    config = tmp_path / "select.toml"
    config.write_text(f'pool = "{data_dir / "pool"}"\nmodel = "{data_dir / "model.onnx"}"\nk = 10\nactors = 2\n'
                      f'out = "file://{dest}"\nkeep_checkpoints = true\ncheckpoint_dir = "file://{tmp_path / "ck"}"\n')
    assert select_job.main(["--config", str(config)]) == 0
    data = json.loads((dest / "manifest.json").read_text())
    assert data["settings"]["keep_checkpoints"] is True and data["settings"]["checkpoint_dir"] == f"file://{tmp_path / 'ck'}"
    assert data["checkpoints"].startswith(f"file://{tmp_path / 'ck'}/")
    assert list(pafs.LocalFileSystem().get_file_info(pafs.FileSelector(data["checkpoints"][len("file://"):])))
