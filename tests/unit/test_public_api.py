"""The public API is pinned: a change to it is a deliberate change to this test."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import alscale
from alscale.exceptions import AlscaleError, ConfigError, ModelError, OutputError, StrategyError


def test_all_is_sorted_and_exact():
    assert alscale.__all__ == sorted(alscale.__all__)
    assert set(alscale.__all__) == {
        "AlscaleError",
        "Manifest",
        "SelectSettings",
        "Workspace",
        "__version__",
        "inspect_model",
        "load_config_file",
        "make_settings",
        "run_round",
        "select",
        "simulate",
    }
    for name in alscale.__all__:
        assert hasattr(alscale, name)
    assert set(alscale.__all__) <= set(dir(alscale))  # the lazily loaded names too, for help() and completion


def test_every_error_derives_from_alscale_error():
    import alscale.exceptions as exc

    for name in exc.__all__:
        assert issubclass(getattr(exc, name), exc.AlscaleError)
    assert str(exc.PoolExhaustedError(120, 500)) == "Pool exhausted: 120 available / 500 requested"


def test_python_dash_m_alscale():
    proc = subprocess.run([sys.executable, "-m", "alscale", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "alscale" in proc.stdout and "select" in proc.stdout


def test_pure_cores_do_not_import_ray():
    code = "import sys, alscale.strategies, alscale.reduce, alscale.pool, alscale.model, alscale.manifest; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr


# -- the Python functions take what the CLI takes, and refuse bad values in one line ----------


def _one_line(exc: pytest.ExceptionInfo) -> bool:
    return isinstance(exc.value, AlscaleError) and "\n" not in str(exc.value)


def test_numpy_integers_are_kept_as_int_in_the_settings_and_the_manifest():
    settings = alscale.make_settings(pool="p", model="m.onnx", k=np.int64(5), seed=np.int32(2), threads=np.int64(1),
                                     actors=np.int64(3), batch_size=np.int64(64))
    recorded = settings.to_dict()  # the manifest's "settings"; json.dumps wrote numpy integers as strings
    assert [recorded[name] for name in ("k", "seed", "threads", "actors", "batch_size")] == [5, 2, 1, 3, 64]
    assert type(settings.k) is int and type(settings.seed) is int


def test_batch_size_auto_is_taken_as_the_cli_takes_it():
    from alscale.cli.options import BatchSize

    assert BatchSize().convert("AUTO", None, None) == "auto"
    assert alscale.make_settings(pool="p", model="m.onnx", batch_size="AUTO").batch_size == "auto"
    with pytest.raises(ConfigError) as exc:
        alscale.make_settings(pool="p", model="m.onnx", batch_size="fast")
    assert _one_line(exc) and "'fast'" in str(exc.value)


@pytest.mark.parametrize("call", [
    lambda: alscale.make_settings(5, pool="p", model="m.onnx"),
    lambda: alscale.load_config_file(None),
    lambda: alscale.select("p", "m.onnx", config=3),
])
def test_a_config_that_is_not_a_path_is_a_config_error(call):
    with pytest.raises(ConfigError, match="must be a path") as exc:
        call()
    assert _one_line(exc)


@pytest.mark.parametrize("params", ["beta=1", 5])
def test_strategy_params_that_are_not_a_table_are_a_config_error(params):
    with pytest.raises(ConfigError, match="'strategy_params' setting must be a table") as exc:  # ValueError, TypeError from dict()
        alscale.select("p", "m.onnx", strategy_params=params)
    assert _one_line(exc)


def test_inspect_model_and_manifest_read_refuse_a_non_path():
    from alscale.manifest import Manifest

    with pytest.raises(ModelError, match="Got None"):
        alscale.inspect_model(None)
    with pytest.raises(OutputError, match="Got 5"):
        Manifest.read(5)


@pytest.mark.parametrize("name", [3, None, ["margin"]])
def test_get_strategy_refuses_a_non_name(name):
    from alscale.strategies import get_strategy

    with pytest.raises(StrategyError) as exc:
        get_strategy(name)
    assert _one_line(exc) and repr(name) in str(exc.value)


def test_registering_a_name_twice_is_a_strategy_error():
    from alscale.strategies import STRATEGIES, register

    with pytest.raises(StrategyError, match="'margin'"):
        register(STRATEGIES["margin"])


@pytest.mark.parametrize("scorer", ["entropy", "margin", "least_confidence"])
@pytest.mark.parametrize("probs", [[0.2, 0.8], np.ones((2, 2, 2)), np.ones((3, 0)), None])
def test_uncertainty_scorers_want_probs_of_shape_n_by_c(scorer, probs):
    import alscale.strategies

    with pytest.raises(StrategyError, match="shape \\(n, classes\\)") as exc:
        getattr(alscale.strategies, scorer)(probs)
    assert _one_line(exc)


def test_gradient_factors_shape_error_is_an_alscale_error():
    from alscale.strategies import gradient_factors

    with pytest.raises(StrategyError, match="Got \\(2,\\) and \\(1, 1\\)"):
        gradient_factors([0.2, 0.8], [[1.0]])


def test_top_k_takes_numpy_integers_and_refuses_other_k():
    from alscale.reduce import TopK, top_k_order

    acc = TopK(np.int64(2))
    assert type(acc.k) is int
    acc.add(np.array([0.1, 0.9, 0.9]), np.array([5, 7, 3]))
    assert acc.result()["id"].tolist() == [3, 7]
    assert top_k_order([0.1, 0.9, 0.5], [1, 2, 3], np.int32(2)).tolist() == [1, 2]
    for k in (2.5, None, "3", -1):
        with pytest.raises(ConfigError, match="'k' parameter must be an int >= 0"):
            TopK(k)
        with pytest.raises(ConfigError, match="'k' parameter must be an int >= 0"):
            top_k_order([0.1, 0.9], [1, 2], k)


def test_top_k_refuses_scores_and_ids_of_different_lengths():
    from alscale.reduce import TopK, top_k_order

    with pytest.raises(ConfigError, match="Got shapes"):
        top_k_order([0.1, 0.9, 0.5], [1, 2], 2)
    acc = TopK(2)
    with pytest.raises(ConfigError, match="Got shapes"):  # would pair scores with the wrong ids
        acc.add(np.array([0.1, 0.9]), np.array([1, 2]), confidence=np.array([0.5]))
    acc.add(np.array([0.1]), np.array([1]))
    with pytest.raises(ConfigError, match="payload columns"):
        acc.add(np.array([0.2]), np.array([2]), confidence=np.array([0.5]))


def test_cohen_kappa_refuses_labelings_of_different_lengths():
    from alscale.loop.metrics import cohen_kappa

    with pytest.raises(ConfigError, match="Got shapes \\(2,\\) and \\(1,\\)"):  # it returned 0.0
        cohen_kappa([1, 2], [1])


def test_composition_refuses_mismatched_or_string_inputs():
    from alscale.loop.composition import compare_distributions, js_divergence

    with pytest.raises(ConfigError, match="Got shapes \\(2,\\) and \\(1,\\)"):
        js_divergence([0.5, 0.5], [1.0])
    for sample in (None, "ab"):  # None raised TypeError; "ab" was read as the values 'a' and 'b'
        with pytest.raises(ConfigError, match="'sample' parameter must be a sequence"):
            compare_distributions(sample, ["a", "b"])


def test_ece_and_stopping_refuse_bad_values():
    from alscale.loop.metrics import expected_calibration_error
    from alscale.loop.stopping import check_stopping

    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert expected_calibration_error([1, 0], probs, n_bins=np.int64(10)) == expected_calibration_error([1, 0], probs, n_bins=10)
    with pytest.raises(ConfigError, match="'n_bins'"):
        expected_calibration_error([1, 0], probs, n_bins=2.5)
    with pytest.raises(ConfigError, match="Got \\(2,\\) and \\(2,\\)"):
        expected_calibration_error([1, 0], [0.2, 0.8])
    for patience in (2.5, None):
        with pytest.raises(ConfigError, match="'patience'"):
            check_stopping([{"labels": 10, "metrics": {}}], [], patience=patience)


# -- queues: the same defaults and checks as `alscale push` / `alscale pull` -------------------


def test_a_project_without_kind_is_label_studio_as_on_the_command_line():
    from alscale.cli.push import queue_settings
    from alscale.queues import LabelStudioConnector, make_connector

    flags = {"url": "http://127.0.0.1:8080", "project": 3}
    assert queue_settings(None, **flags)["kind"] == "label-studio"
    connector = make_connector(flags)
    assert isinstance(connector, LabelStudioConnector) and connector.project == 3


@pytest.mark.parametrize("project", [3.7, True, 0, "three"])
def test_a_label_studio_project_that_is_not_an_int_is_refused_not_truncated(project):
    from alscale.queues import make_connector

    with pytest.raises(ConfigError, match="'project' must be an int >= 1") as exc:
        make_connector({"kind": "label-studio", "url": "http://127.0.0.1:8080", "project": project})
    assert _one_line(exc)


def test_connectors_take_numpy_numbers():
    from alscale.queues import HttpEndpointConnector, LabelStudioConnector, make_connector

    ls = LabelStudioConnector("http://127.0.0.1:8080", np.int64(3), chunk_size=np.int64(10), lookup_chunk=np.int32(5),
                              page_size=np.int64(7), retries=np.int64(1), timeout=np.float32(5.0))
    assert (ls.project, ls.chunk_size, ls.lookup_chunk, ls.page_size, ls.retries, ls.timeout) == (3, 10, 5, 7, 1, 5.0)
    assert type(ls.project) is int and type(ls.chunk_size) is int
    assert HttpEndpointConnector("http://127.0.0.1:9", retries=np.int64(2), backoff=np.float32(0.1)).retries == 2
    assert make_connector({"kind": "label-studio", "url": "http://127.0.0.1:8080", "project": "3"}).project == 3


@pytest.mark.parametrize("settings", ["queue.toml", [1], {"kind": ["file"], "path": "x.jsonl"},
                                      {"kind": "label-studio", "url": "http://127.0.0.1:8080", "project": 3, "data_columns": 5},
                                      {"kind": "file", "path": None}])
def test_bad_queue_settings_are_one_line_config_errors(settings):
    from alscale.queues import make_connector

    with pytest.raises(ConfigError) as exc:
        make_connector(settings)
    assert _one_line(exc)


def test_load_queue_settings_refuses_a_non_path():
    from alscale.queues import load_queue_settings

    with pytest.raises(ConfigError, match="must be a path"):
        load_queue_settings(None)
