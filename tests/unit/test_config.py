"""Settings: defaults < config file < flags; unknown keys suggest the close match."""

from __future__ import annotations

import pytest

from alscale.config import make_settings
from alscale.exceptions import ConfigError


def test_file_then_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("pool: pool/\nmodel: [a.onnx, b.onnx]\nk: 5\nstrategy-params: {oversampling: 2}\n")
    s = make_settings(tmp_path / "c.yaml", k=9, exclude=[], strategy=None)
    assert s.k == 9 and s.strategy == "entropy" and s.pool == str(tmp_path / "pool/")
    assert s.model == (str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx"))
    assert dict(s.strategy_params) == {"oversampling": 2}


def test_unknown_keys_and_bad_values(tmp_path):
    (tmp_path / "c.toml").write_text('pool = "p"\nmodel = "m"\nbatchsize = 3\n')
    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        make_settings(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="The 'k' parameter must be an int >= 1. Got -1 instead."):
        make_settings(pool="p", model=["m"], k=-1)
    with pytest.raises(ConfigError, match="'pool' setting is required"):
        make_settings(model=["m"])
    (tmp_path / "broken.toml").write_text("pool = [\n")
    with pytest.raises(ConfigError, match="not valid"):
        make_settings(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match="on_invalid"):
        make_settings(pool="p", model=["m"], on_invalid="ignore")


def test_settings_built_directly_take_paths_lists_and_one_string(tmp_path):
    from alscale.config import SelectSettings

    s = SelectSettings(pool=tmp_path / "pool", model=[tmp_path / "m.onnx"], exclude=str(tmp_path / "x.csv"), out=tmp_path / "out")
    assert s.pool == str(tmp_path / "pool") and s.out == str(tmp_path / "out")
    assert s.model == (str(tmp_path / "m.onnx"),) and s.exclude == (str(tmp_path / "x.csv"),)
    assert s.features is None and s.labeled == ()
    with pytest.raises(ConfigError, match=r"The 'model' setting must be a list of strings. Got \['.*/m', 5\]"):
        SelectSettings(pool="p", model=["m", 5])
    with pytest.raises(ConfigError, match="The 'exclude' setting must be a list of strings. Got 5"):
        SelectSettings(pool="p", model=["m"], exclude=5)


@pytest.mark.parametrize("name, body, match", [
    ("c.toml", 'pool = "p"\nmodel = "m"\nparam = "rounds=3"\n', r"Unknown setting 'param' .* go in a \[strategy_params\] table"),
    ("c.toml", 'pool = "p"\nmodel = "m"\nzzz = 1\n', r"Unknown setting 'zzz' .* Expected one of \['actors', 'address'"),
    ("c.yaml", "pool: p\nmodel: m\nbatch-sise: 3\n", r"Unknown setting 'batch-sise' in config file .* Did you mean 'batch_size'\?"),
    ("c.toml", 'pool = "p"\nmodel = "m"\nquiet = true\n', r"Unknown setting 'quiet' .* --quiet says how one run prints, not what it selects: give it as a flag\."),
    ("bad.yaml", "pool: p\nmodel: [a, b\nk: 3\n", r"is not valid YAML: expected ',' or '\]', but got ':' \(line 3, column 2\)"),
])
def test_config_file_errors_name_the_key_as_written_and_the_line(tmp_path, name, body, match):
    """Without a close match the known keys are listed; a YAML error says where it is."""
    (tmp_path / name).write_text(body)
    with pytest.raises(ConfigError, match=match):
        make_settings(tmp_path / name)


def test_local_paths_become_absolute_and_uris_stay(tmp_path, monkeypatch):
    """Actors on a cluster run in the cluster's directory, not the driver's: they get absolute paths."""
    from alscale.config import SelectSettings

    monkeypatch.chdir(tmp_path)
    s = SelectSettings(pool="pool/*.parquet", model=["m.onnx", "s3://b/m2.onnx"], out="batches/r1", exclude=["x.csv"],
                       checkpoint_dir="gs://b/ck", features=["features"])
    assert s.pool == str(tmp_path / "pool/*.parquet") and s.out == str(tmp_path / "batches/r1")
    assert s.model == (str(tmp_path / "m.onnx"), "s3://b/m2.onnx") and s.exclude == (str(tmp_path / "x.csv"),)
    assert s.checkpoint_dir == "gs://b/ck" and s.features == ("features",)


def test_flags_add_strategy_params_to_the_files_and_leave_progress_alone(tmp_path):
    from alscale.cli.select import _progress_default

    cfg = tmp_path / "c.toml"
    cfg.write_text('pool = "p"\nmodel = "m.onnx"\nprogress = false\n[strategy_params]\noversampling = 2.0\nrounds = 5\n')
    s = make_settings(cfg, strategy_params={"beta": 1, "rounds": 3})
    assert s.strategy_params == {"oversampling": 2.0, "rounds": 3, "beta": 1}
    assert make_settings(cfg, progress=_progress_default(str(cfg))).progress is False
    cfg.write_text('pool = "p"\nmodel = "m.onnx"\n')
    assert make_settings(cfg, progress=_progress_default(str(cfg))).progress is True


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("out", "", "The 'out' parameter must not be empty. Got ''; leave it out for the default (nothing written)."),
        ("address", "", "The 'address' parameter must not be empty. Got ''; leave it out for the default (a private local Ray)."),
        ("checkpoint_dir", "", "The 'checkpoint_dir' parameter must not be empty."),
        ("exclude", ["ids.txt", ""], "The 'exclude' parameter must not hold an empty string."),
        ("features", [""], "The 'features' parameter must not hold an empty string. Got ['']."),
    ],
)
def test_an_empty_string_is_refused_not_taken_for_the_default(tmp_path, name, value, message):
    # an empty shell variable (--out "$OUT") must not quietly mean "write nothing" or "run locally"
    with pytest.raises(ConfigError) as err:
        make_settings(pool=str(tmp_path / "pool"), model=str(tmp_path / "m.onnx"), **{name: value})
    assert message in str(err.value)


def test_exclusion_flags_add_to_the_files_lists(tmp_path):
    """A flag must never let the file's already-labeled ids be selected again."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('pool = "p"\nmodel = "m.onnx"\nexclude = ["labeled.parquet", "pending.txt"]\nlabeled = "done.csv"\n')
    s = make_settings(cfg, exclude=["more.csv"], labeled=("extra.csv",))
    assert s.exclude[:2] == (str(tmp_path / "labeled.parquet"), str(tmp_path / "pending.txt")) and s.exclude[2].endswith("more.csv")
    assert len(s.exclude) == 3
    assert s.labeled[0] == str(tmp_path / "done.csv") and s.labeled[1].endswith("extra.csv") and len(s.labeled) == 2
    assert make_settings(cfg, exclude=[]).exclude == (str(tmp_path / "labeled.parquet"), str(tmp_path / "pending.txt"))


def test_a_strategy_flag_other_than_the_files_leaves_its_parameters_out(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('pool = "p"\nmodel = "m.onnx"\nstrategy = "badge"\n[strategy_params]\nrounds = 3\n')
    assert make_settings(cfg).strategy_params == {"rounds": 3}
    assert make_settings(cfg, strategy="badge", strategy_params={"oversampling": 4}).strategy_params == {"rounds": 3, "oversampling": 4}
    assert make_settings(cfg, strategy="margin").strategy_params == {}
    assert make_settings(cfg, strategy="coreset", strategy_params={"x": 1}).strategy_params == {"x": 1}
    cfg.write_text('pool = "p"\nmodel = "m.onnx"\n[strategy_params]\nrounds = 3\n')  # names no strategy: its parameters are for the flag's
    assert make_settings(cfg, strategy="badge").strategy_params == {"rounds": 3}


# --- 2026-12-08 review: an empty path in a config file is refused, not the config's own folder ---------------------

@pytest.mark.parametrize("key, message", [
    ("pool", "The 'pool' parameter is required"),
    ("out", "The 'out' parameter must not be empty"),
    ("model", "The 'model' parameter must not hold an empty string"),
])
def test_an_empty_path_in_a_config_file_is_refused_like_an_empty_flag(tmp_path, key, message):
    """``pool = ""`` read every Parquet file beside the config; ``model = ""`` would make a committee of the models there."""
    from alscale.config import make_settings
    from alscale.exceptions import ConfigError

    values = {"pool": "pool.parquet", "model": "m.onnx", "out": "batch"}
    values[key] = ""
    config = tmp_path / "select.toml"
    config.write_text("".join(f'{name} = "{value}"\n' for name, value in values.items()))
    with pytest.raises(ConfigError, match=message):
        make_settings(config)


def test_first_line_of_an_exception_without_a_message_is_its_type():
    """``str(OSError()).splitlines()[0]`` raised IndexError: a traceback where one line was meant."""
    from alscale.exceptions import first_line

    assert first_line(OSError()) == "OSError"
    assert first_line(ValueError("  \n")) == "ValueError"
    assert first_line(ValueError("bad value\n  more detail")) == "bad value"
