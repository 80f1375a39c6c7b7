"""``alscale select`` / ``inspect-model`` / ``demo`` as a user runs them.

Every bad input of the scoring-engine issue: one line on stderr, exit code 2, no output
directory.  In-process runs share one real local Ray; one test runs the installed console
script in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from alscale.cli import main
from tests.conftest import tied_features, write_pool

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return write_pool(tmp_path_factory.mktemp("cli") / "pool", tied_features(800), files=2, row_group_size=200)


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def assert_clean_failure(result, out, pattern):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("alscale: error: "), result.stderr
    assert pattern in lines[0], lines[0]
    assert not os.path.exists(out)
    assert not os.path.exists(f"{out}.checkpoints")  # nothing to resume: the same inputs fail the same way
    assert not [p for p in os.listdir(os.path.dirname(out)) if p.startswith(".out.tmp")]


def test_select_writes_manifest_and_refuses_to_overwrite(tmp_path, pool, model_path):
    out = tmp_path / "out"
    r = run("select", "--pool", pool, "--model", model_path, "--k", 12, "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert pq.read_table(out / "batch.parquet").num_rows == 12
    assert json.loads((out / "manifest.json").read_text())["k"] == 12
    before = (out / "batch.parquet").read_bytes()
    r = run("select", "--pool", pool, "--model", model_path, "--k", 5, "--out", out, "--quiet")
    assert r.exit_code == 2 and "--force" in r.stderr
    assert (out / "batch.parquet").read_bytes() == before
    r = run("select", "--pool", pool, "--model", model_path, "--k", 5, "--out", out, "--quiet", "--force")
    assert r.exit_code == 0 and pq.read_table(out / "batch.parquet").num_rows == 5


def test_config_file_flags_override_and_unknown_keys(tmp_path, pool, model_path):
    cfg = tmp_path / "select.toml"
    cfg.write_text(f'pool = "{pool}"\nmodel = "{model_path}"\nk = 7\nstrategy = "margin"\n')
    r = run("select", "--config", cfg, "--k", 9, "--out", tmp_path / "o1", "--quiet")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "o1" / "manifest.json").read_text())
    assert data["k"] == 9 and data["strategy"]["name"] == "margin"
    cfg.write_text(f'pool = "{pool}"\nmodel = "{model_path}"\nstratgy = "margin"\n')
    assert_clean_failure(run("select", "--config", cfg, "--out", tmp_path / "out"), tmp_path / "out", "Did you mean 'strategy'?")


def _bad_pools(tmp_path):
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 garbage")
    pq.write_table(pa.table({"key": [1, 2], "features": pa.array([[1.0] * 8] * 2, pa.list_(pa.float32(), 8))}), tmp_path / "noid.parquet")
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "features": pa.array([], pa.list_(pa.float32(), 8))}), tmp_path / "empty.parquet")
    write_pool(tmp_path / "narrow", np.ones((50, 5), np.float32))
    X = tied_features(100)
    X[3, 1] = np.nan
    write_pool(tmp_path / "nan", X)
    write_pool(tmp_path / "dup", tied_features(100), ids=np.r_[np.arange(99), 5])
    # a variable-length list column: the width is only known from the rows (9 here; the model takes 8)
    pq.write_table(pa.table({"id": np.arange(200), "features": pa.array([[0.5] * 9] * 200, pa.list_(pa.float32()))}),
                   tmp_path / "list9.parquet")
    ragged = [[0.5] * 8] * 200
    ragged[37] = [0.5] * 7
    pq.write_table(pa.table({"id": np.arange(200), "features": pa.array(ragged, pa.list_(pa.float32()))}), tmp_path / "ragged.parquet")
    holes = [[0.5] * 8] * 200
    holes[41] = None
    pq.write_table(pa.table({"id": np.arange(200), "features": pa.array(holes, pa.list_(pa.float32()))}), tmp_path / "null-row.parquet")
    pq.write_table(pa.table({"id": np.arange(2), "features": pa.array([["a"] * 8] * 2, pa.list_(pa.string()))}), tmp_path / "strings.parquet")
    u64 = pa.array([*range(199), 2**63 + 5], pa.uint64())
    pq.write_table(pa.table({"id": u64, "features": pa.array([[0.5] * 8] * 200, pa.list_(pa.float32(), 8))}), tmp_path / "u64.parquet")
    pq.write_table(pa.table({"id": [1.5, 2.0]}), tmp_path / "float-ids.parquet")
    (tmp_path / "some-ids.txt").write_text("1\n2\n")


@pytest.mark.parametrize(
    "case,args,message",
    [
        ("missing pool", ["--pool", "{tmp}/nope"], "does not exist"),
        ("corrupt parquet", ["--pool", "{tmp}/corrupt.parquet"], "not readable Parquet"),
        ("no id column", ["--pool", "{tmp}/noid.parquet"], "no id column 'id'"),
        ("empty pool", ["--pool", "{tmp}/empty.parquet"], "is empty"),
        ("width mismatch", ["--pool", "{tmp}/narrow"], "give 5 features per row, model input 'features' takes 8"),
        ("nan features", ["--pool", "{tmp}/nan"], "1 row(s) hold NaN, inf or null features (e.g. id 3)"),
        ("duplicate ids", ["--pool", "{tmp}/dup"], "Id 5 appears more than once"),
        ("k zero", ["--pool", "{pool}", "--k", "0"], "The 'k' parameter must be an int >= 1. Got 0 instead."),
        ("k too large", ["--pool", "{pool}", "--k", "5000"], "Pool exhausted: 800 available / 5000 requested"),
        ("unreadable exclusion", ["--pool", "{pool}", "--exclude", "{tmp}/missing-ids.txt"], "Cannot read id file"),
        ("unknown strategy", ["--pool", "{pool}", "--strategy", "entropi"], "Did you mean 'entropy'?"),
        ("batch size word", ["--pool", "{pool}", "--batch-size", "fast"], "The 'batch_size' parameter must be 'auto' or an int >= 1. Got 'fast' instead."),
        ("batch size zero", ["--pool", "{pool}", "--batch-size", "0"], "The 'batch_size' parameter must be 'auto' or an int >= 1. Got 0 instead."),
        ("k not a number", ["--pool", "{pool}", "--k", "abc"], "Invalid value for '--k': 'abc' is not a valid integer. (see alscale select --help)"),
        ("list rows too wide", ["--pool", "{tmp}/list9.parquet"],
         "Feature width does not match the model: column 'features' holds 9 values per row (id "),  # whichever shard reports first
        ("list rows of differing lengths", ["--pool", "{tmp}/ragged.parquet"], "Feature column 'features' must hold 8 values in every row, as the model's input does. Got 7 in id 37."),
        ("a null list row", ["--pool", "{tmp}/null-row.parquet"], "1 row(s) hold NaN, inf or null features (e.g. id 41)"),
        ("a list of strings", ["--pool", "{tmp}/strings.parquet"], "Feature column 'features' must hold numbers. Got list<element: string>."),
        ("uint64 ids past int64", ["--pool", "{tmp}/u64.parquet"], "holds 9223372036854775813, which does not fit an int64 id"),
        ("fractional exclusion ids", ["--pool", "{pool}", "--exclude", "{tmp}/float-ids.parquet"], "holds 1.5, but the pool's ids are integers"),
        ("an empty model path", ["--pool", "{pool}", "--model", ""], "The 'model' parameter must not hold an empty string. Got ['']."),
        ("a checkpoint URI no filesystem opens", ["--pool", "{pool}", "--checkpoint-dir", "foo://bar"],
         "Cannot open checkpoint location 'foo://bar': Unrecognized filesystem type in URI: foo://bar"),
        ("unknown strategy parameter", ["--pool", "{pool}", "--param", "foo=1"], "Strategy 'entropy' takes no parameters. Got 'foo'."),
        ("the engine's own parameter", ["--pool", "{pool}", "--param", "capacity=5"], "Strategy 'entropy' takes no parameters. Got 'capacity'."),
        ("a flag that is not true or false", ["--pool", "{pool}", "--strategy", "coreset", "--param", "report_radius=maybe"],
         "The 'report_radius' parameter of strategy 'coreset' must be true or false. Got 'maybe' instead."),
    ],
)
def test_bad_input_is_one_line_exit_2_no_output(tmp_path, pool, model_path, case, args, message):
    _bad_pools(tmp_path)
    args = [a.format(tmp=tmp_path, pool=pool) for a in args]
    if "--model" not in args:
        args += ["--model", str(model_path)]
    out = tmp_path / "out"
    assert_clean_failure(run("select", *args, "--out", out, "--quiet"), out, message)


def test_config_values_of_the_wrong_type_change_nothing(tmp_path, pool, model_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    cfg = tmp_path / "select.toml"
    for line, message in (('force = "no"', "The 'force' setting must be true or false. Got 'no'."),
                          ("exclude = [1, 2]", "The 'exclude' setting must be a list of strings. Got [1, 2]."),
                          ("model = 5", "The 'model' setting must be a list of strings. Got 5."),
                          ("checkpoint_dir = 5", "The 'checkpoint_dir' setting must be a string. Got 5.")):
        model = "" if line.startswith("model") else f'model = "{model_path}"\n'
        cfg.write_text(f'pool = "{pool}"\n{model}k = 5\n{line}\n')
        r = run("select", "--config", cfg, "--out", out, "--quiet")
        assert r.exit_code == 2 and r.stderr.strip() == f"alscale: error: {message}", r.stderr
        assert os.listdir(out) == ["keep.txt"]


def _pool_failing_in_the_scan(tmp_path):
    """A pool whose fault only a scan of its rows finds: an error about it means scoring ran."""
    X = tied_features(100)
    X[3, 1] = np.nan
    return write_pool(tmp_path / "nan-pool", X)


def test_output_under_a_file_fails_before_scoring(tmp_path, model_path):
    (tmp_path / "afile").write_text("x")
    pool = _pool_failing_in_the_scan(tmp_path)
    r = run("select", "--pool", pool, "--model", model_path, "--out", tmp_path / "afile" / "sub", "--quiet")
    assert r.exit_code == 2 and "is a file, not a directory" in r.stderr, r.stderr  # not the scan's NaN error
    assert "NaN" not in r.stderr
    assert (tmp_path / "afile").read_text() == "x"


def test_an_output_that_is_a_file_is_named_so_with_or_without_force(tmp_path, model_path):
    (tmp_path / "notes").write_text("x")
    pool = _pool_failing_in_the_scan(tmp_path)
    for force in ([], ["--force"]):
        r = run("select", "--pool", pool, "--model", model_path, "--out", tmp_path / "notes", "--quiet", *force)
        assert r.exit_code == 2 and r.stderr.strip() == (f"alscale: error: Expected a directory for the output. Got {str(tmp_path / 'notes')!r}, "
                                                         "which is a file: force replaces an earlier output, never a file; choose another output."), r.stderr
        assert (tmp_path / "notes").read_text() == "x"


@pytest.mark.parametrize("inside", ["folder", "glob", "file-uri"])
def test_an_output_inside_the_pool_is_refused_before_scoring(tmp_path, model_path, inside):
    """Its batch.parquet would be read as pool rows by the next run over the same pool."""
    pool = _pool_failing_in_the_scan(tmp_path)
    spec = {"folder": str(pool), "glob": f"{tmp_path}/nan-*/**/*.parquet", "file-uri": f"file://{pool}"}[inside]
    out = pool / "round-1"
    r = run("select", "--pool", spec, "--model", model_path, "--out", out, "--quiet")
    assert r.exit_code == 2 and r.stderr.strip() == (f"alscale: error: Output {str(out)!r} is inside the pool {spec!r}: its batch.parquet "
                                                     "would be read as pool rows by every later run over that pool. Choose an output "
                                                     "outside the pool."), r.stderr
    assert not out.exists()


def test_force_never_replaces_a_folder_that_is_not_an_output(tmp_path, pool, model_path):
    """--out naming the pool's own folder (or any folder of other files) is refused even with --force."""
    files = sorted(p.name for p in pool.iterdir())
    r = run("select", "--pool", pool, "--model", model_path, "--out", pool, "--force", "--quiet")
    assert r.exit_code == 2 and "holds files of its own (" in r.stderr and "Nothing was removed" in r.stderr
    assert sorted(p.name for p in pool.iterdir()) == files
    earlier = tmp_path / "earlier"  # an earlier output the user added notes to: the notes stay, and so does the output
    r = run("select", "--pool", pool, "--model", model_path, "--k", 3, "--out", earlier, "--quiet")
    assert r.exit_code == 0
    (earlier / "notes.txt").write_text("why these")
    (earlier / "sub").mkdir()
    before = (earlier / "batch.parquet").read_bytes()
    r = run("select", "--pool", pool, "--model", model_path, "--k", 4, "--out", earlier, "--force", "--quiet")
    assert r.exit_code == 2 and "holds files of its own (notes.txt, sub): force replaces only an output alscale wrote" in r.stderr, r.stderr
    assert (earlier / "notes.txt").read_text() == "why these" and (earlier / "batch.parquet").read_bytes() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("select", "--pool", pool, "--model", model_path, "--k", 3, "--out", empty, "--force", "--quiet")
    assert r.exit_code == 0 and pq.read_table(empty / "batch.parquet").num_rows == 3


def test_an_output_uri_is_refused_before_scoring(tmp_path, model_path):
    pool = _pool_failing_in_the_scan(tmp_path)
    r = run("select", "--pool", pool, "--model", model_path, "--out", "s3://bucket/round-1", "--quiet")
    assert r.exit_code == 2 and "Expected a local output directory. Got the URI 's3://bucket/round-1'" in r.stderr, r.stderr
    assert "NaN" not in r.stderr
    assert not os.path.exists("s3:")


def test_model_without_class_output_and_bad_probabilities(tmp_path, pool):
    import onnx
    from onnx import TensorProto, helper

    def save(name, node_out, nodes, inits=()):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info(node_out, TensorProto.FLOAT, ["n", 8])], initializer=list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.save(m, tmp_path / name)
        return tmp_path / name

    no_probs = save("noprobs.onnx", "out", [helper.make_node("Relu", ["features"], ["out"])])
    eighth = onnx.numpy_helper.from_array(np.full(8, 1 / 8, np.float32), "eighth")
    bad_sum = save("badsum.onnx", "probabilities", [helper.make_node("Add", ["features", "eighth"], ["probabilities"])], [eighth])
    out = tmp_path / "out"
    assert_clean_failure(run("select", "--pool", pool, "--model", no_probs, "--out", out), out, "no class probability")
    assert_clean_failure(run("select", "--pool", pool, "--model", bad_sum, "--out", out, "--quiet"), out, "is not a probability")


def test_inspect_model(model_path):
    r = run("inspect-model", model_path)
    assert r.exit_code == 0 and "embedding  'embedding' width=16" in r.output and "4 from 'probabilities'" in r.output
    data = json.loads(run("inspect-model", model_path, "--json").stdout)
    assert data["n_classes"] == 4 and data["embedding_output"] == "embedding"


def test_help_explains_every_command():
    r = run("--help")
    for name in ("select", "demo", "bench", "inspect-model"):
        assert name in r.output
    assert "--exclude" in run("select", "--help").output


def test_demo_help_offers_exactly_the_strategies_it_can_run():
    from alscale.strategies import STRATEGIES, get_strategy

    text = " ".join(run("demo", "--help").output.split())
    runnable = [n for n in STRATEGIES if not get_strategy(n).needs_committee]
    offered = text.split("Selection strategy: ")[1].split(" (the committee")[0].replace(" or ", ", ").split(", ")
    assert offered == runnable


@pytest.mark.parametrize("argv,command", [(["select", "--pool", "p", "--strategy"], "alscale select --help"),
                                          (["--bogus"], "alscale --help"), (["frobnicate"], "alscale --help")])
def test_a_flag_without_its_value_or_an_unknown_flag_is_one_line_pointing_at_the_right_help(argv, command):
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("alscale: error: ") and lines[0].endswith(f"(see {command})"), result.stderr


@pytest.mark.slow
def test_demo_console_script(tmp_path):
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    exe = os.path.join(os.path.dirname(sys.executable), "alscale")
    proc = subprocess.run([exe, "demo", "--dir", str(tmp_path / "demo"), "--rows", "20000", "--k", "15"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "selected 15 of 20,000 rows with margin" in proc.stdout
    assert pq.read_table(tmp_path / "demo" / "batch" / "batch.parquet").num_rows == 15


@pytest.mark.parametrize(
    "args,message",
    [
        (["--rows", "0"], "Invalid value for '--rows': 0 is not in the range x>=1."),
        (["--k", "0"], "Invalid value for '--k': 0 is not in the range x>=1."),
        (["--actors", "0"], "Invalid value for '--actors': 0 is not in the range x>=1."),
        (["--strategy", "margn"], "Unknown strategy 'margn'"),
        (["--rows", "50", "--k", "100"], "Pool exhausted: 50 available / 100 requested"),
        (["--strategy", "qbc-vote"], "Strategy 'qbc-vote' needs a committee of models; the demo has one model."),
    ],
)
def test_demo_refuses_bad_input_before_generating_anything(tmp_path, args, message):
    demo_dir = tmp_path / "demo"
    assert_clean_failure(run("demo", "--dir", demo_dir, *args), demo_dir, message)


@pytest.mark.parametrize("where", ["pool", "top"])
def test_demo_never_replaces_a_folder_of_the_users(tmp_path, where):
    """A project's own pool/ (the README's examples use that name) is refused, left as it was."""
    demo_dir = tmp_path / "project"
    (demo_dir / "pool").mkdir(parents=True)
    mine = demo_dir / "pool" / "labeled.parquet" if where == "pool" else demo_dir / "notes.txt"
    mine.write_text("mine")
    r = run("demo", "--dir", demo_dir, "--rows", "1000", "--k", "5")
    shown = "pool/labeled.parquet" if where == "pool" else "notes.txt"
    assert r.exit_code == 2 and r.stderr.strip() == (f"alscale: error: Expected a new or empty --dir, or one an earlier alscale demo made. "
                                                     f"Got {str(demo_dir)!r}, which holds files of its own ({shown}): the demo replaces "
                                                     "its pool and batch there, so choose another --dir."), r.stderr
    assert mine.read_text() == "mine" and sorted(p.name for p in demo_dir.rglob("*")) == sorted(["pool", mine.name])


def test_demo_takes_a_folder_an_earlier_demo_made(tmp_path):
    from alscale.cli.demo import MARKER, _claim

    legacy = tmp_path / "legacy"  # an earlier version's folder: no marker, only what a demo writes
    (legacy / "pool").mkdir(parents=True)
    (legacy / "pool" / "part-00000.parquet").write_bytes(b"rows")
    (legacy / "model.onnx").write_bytes(b"model")
    _claim(legacy)
    assert (legacy / MARKER).exists()
    (legacy / "pool" / "mine.csv").write_text("x")  # marked now: its pool is the demo's to replace
    _claim(legacy)
    fresh = tmp_path / "new"
    _claim(fresh)
    assert [p.name for p in fresh.iterdir()] == [MARKER]


@pytest.mark.slow
def test_more_actors_than_cores_on_a_private_ray(tmp_path, pool, model_path):
    """A private local Ray gets a CPU per actor asked for (it used to wait forever), and prints nothing on success."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # Ray's default: token auth, and its notice
    exe = os.path.join(os.path.dirname(sys.executable), "alscale")
    actors = (os.cpu_count() or 1) + 1
    proc = subprocess.run([exe, "select", "--pool", str(pool), "--model", str(model_path), "--k", "12", "--actors", str(actors),
                           "--out", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    reference = run("select", "--pool", pool, "--model", model_path, "--k", 12, "--actors", 1, "--out", tmp_path / "ref", "--quiet")
    assert reference.exit_code == 0
    assert (tmp_path / "out" / "batch.parquet").read_bytes() == (tmp_path / "ref" / "batch.parquet").read_bytes()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_where_no_cluster_listens_fails_at_once(tmp_path, pool, model_path):
    """Ray alone retries such an address for minutes; in a process of its own (this one has Ray up already)."""
    exe = os.path.join(os.path.dirname(sys.executable), "alscale")
    out = tmp_path / "out"
    for address, message in ((f"127.0.0.1:{_closed_port()}", "Cannot reach a Ray cluster at '127.0.0.1:"),
                             ("ray://head:client", "must end in a port number"),
                             ("http://127.0.0.1:8265", "Got the HTTP address 'http://127.0.0.1:8265': that is the dashboard's")):
        proc = subprocess.run([exe, "select", "--pool", str(pool), "--model", str(model_path), "--k", "5", "--address", address,
                               "--out", str(out)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("alscale: error: ") and message in proc.stderr, proc.stderr
        assert not out.exists()


def test_an_http_server_or_a_default_client_port_where_nothing_listens_fails_at_once(tmp_path, pool, model_path):
    """The dashboard's port without http:// used to hang for 14 minutes, ray://host (port 10001) for 30 s."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dashboard = f"127.0.0.1:{server.server_address[1]}"
    cases = [([dashboard], {}, f"Got '{dashboard}', where an HTTP server answers: the dashboard's port"),
             (["auto"], {"RAY_ADDRESS": f"http://{dashboard}"}, f"--address auto found 'http://{dashboard}' in RAY_ADDRESS; expected")]
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 10001)) != 0:  # nothing on Ray Client's default port here
            cases.append((["ray://127.0.0.1"], {}, "Cannot reach a Ray cluster at 'ray://127.0.0.1': Connection refused"))
    exe = os.path.join(os.path.dirname(sys.executable), "alscale")
    try:
        for address, env, message in cases:
            start = time.monotonic()
            proc = subprocess.run([exe, "select", "--pool", str(pool), "--model", str(model_path), "--k", "5", "--address", *address,
                                   "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, env={**os.environ, **env})
            assert proc.returncode == 2, proc.stderr[-2000:]
            assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
            assert time.monotonic() - start < 30 and not (tmp_path / "out").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_a_token_that_cannot_be_read_is_one_line_naming_what_is_needed(tmp_path, pool, model_path):
    """Ray raises its AuthenticationError (a traceback before) as it joins; the port only has to be open."""
    import socket

    exe = os.path.join(os.path.dirname(sys.executable), "alscale")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        proc = subprocess.run([exe, "select", "--pool", str(pool), "--model", str(model_path), "--k", "5", "--address", address,
                               "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no-token")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"alscale: error: Cannot join the Ray cluster at '{address}': "), proc.stderr
    assert "expected RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_address_auto_that_finds_a_dead_cluster_fails_at_once(tmp_path, pool, model_path):
    """`--address auto` goes where Ray would (here RAY_ADDRESS); Ray alone retries a dead one for minutes."""
    import time

    exe = os.path.join(os.path.dirname(sys.executable), "alscale")
    dead = f"127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    proc = subprocess.run([exe, "select", "--pool", str(pool), "--model", str(model_path), "--k", "5", "--address", "auto",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_ADDRESS": dead})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"alscale: error: --address auto found '{dead}' in RAY_ADDRESS; cannot reach"), proc.stderr
    assert time.monotonic() - start < 60 and not (tmp_path / "out").exists()


def test_batch_size_auto_in_any_case_and_a_run_without_out(pool, model_path):
    result = run("select", "--pool", pool, "--model", model_path, "--k", 5, "--batch-size", "AUTO")
    assert result.exit_code == 0, result.output
    assert "nothing written (no --out)" in result.stderr and "wrote None" not in result.stderr
    assert "--batch-size INTEGER|auto" in run("select", "--help").output


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_exits_130_with_one_line_and_leaves_no_output_nor_processes(tmp_path, model_path, stop):
    """Ctrl-C in a terminal sends SIGINT to the whole foreground group: the driver and the Ray it started.

    ``timeout``, Kubernetes and CI send SIGTERM to the driver alone; Ray's driver then printed a
    C++ stack trace and aborted (exit 134), leaving its folder and the staging folder behind.
    """
    import glob
    import signal
    import tempfile
    import time

    pool = write_pool(tmp_path / "pool", tied_features(200_000), files=1, row_group_size=20_000)
    exe = os.path.join(os.path.dirname(sys.executable), "alscale")
    # a temporary folder of its own (short: Ray's socket paths must fit 107 bytes), so another alscale on the machine
    # cannot leave a folder there while this runs
    private_tmp = tempfile.mkdtemp(prefix="alscale-t-")
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([exe, "select", "--pool", str(pool), "--model", str(model_path), "--k", "10", "--actors", "1",
                                 "--batch-size", "1", "--out", str(tmp_path / "out")],  # one row per model run: ~10 s here
                                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True, env={**os.environ, "TMPDIR": private_tmp})
        deadline = time.monotonic() + 120
        while "k/200k" not in err.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, err.read_text()[-2000:]
        assert len(glob.glob(os.path.join(private_tmp, "alscale-ray-*"))) == 1  # where its Ray's folder is while it runs
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 130, err.read_text()[-2000:]
    last = err.read_text().replace("\r", "\n").strip().splitlines()[-1]
    assert last == "alscale: interrupted" and "SIGTERM received" not in err.read_text()
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp*"))
    assert glob.glob(os.path.join(private_tmp, "alscale-ray-*")) == []  # its Ray's folder is gone
    shutil.rmtree(private_tmp)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # and so are its processes
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("processes of the interrupted select are still running")


def test_an_output_another_run_wrote_meanwhile_keeps_this_runs_checkpoints_and_says_how_to_use_them(pool, model_path, tmp_path, monkeypatch):
    """The same command started twice: the second to finish failed with "exists already" and left
    ``<out>.checkpoints/`` behind, which the same command could then never clean up (it is refused)."""
    import json

    import alscale.engine.driver as driver

    out = tmp_path / "race"
    real_batch_table = driver.batch_table

    def the_other_run_finishes_first(*args, **kwargs):
        out.mkdir()
        (out / "manifest.json").write_text("{}")
        (out / "batch.parquet").write_bytes(b"")
        return real_batch_table(*args, **kwargs)

    monkeypatch.setattr(driver, "batch_table", the_other_run_finishes_first)
    result = run("select", "--pool", pool, "--model", model_path, "--k", 5, "--out", out)
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()[-1:]
    checkpoints = tmp_path / "race.checkpoints"
    assert f"Output directory {str(out)!r} was written by another run while this one ran" in line
    assert "run it again with --force to replace that output from them" in line and str(checkpoints) in line
    assert list(checkpoints.glob("*/shard-*.npz"))
    again = run("select", "--pool", pool, "--model", model_path, "--k", 5, "--out", out, "--force")
    assert again.exit_code == 0, again.output
    data = json.loads((out / "manifest.json").read_text())
    assert data["counts"]["shards_resumed"] == data["counts"]["shards"] > 0 and not checkpoints.exists()
