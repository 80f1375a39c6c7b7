"""Strategy parameters are checked, with one line naming the strategy and the parameter, before Ray starts."""

from __future__ import annotations

import math

import numpy as np
import pytest

import alscale
from alscale.exceptions import ConfigError
from alscale.reduce._params import resolve_params, user_params
from alscale.strategies import get_strategy


def _resolve(strategy, params):
    return resolve_params(strategy, get_strategy(strategy).defaults, params, from_user=True)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# (strategy, params, the whole message expected): written out by hand from the documented ranges
# (README: rounds, sketch_dim >= 1; local_trials >= 0; oversampling > 0; n_clusters, niter >= 1;
# sample_size >= 0; candidate_multiple >= 1), not from the code's rule table
REFUSED = [
    ("badge", {"rounds": None}, "The 'rounds' parameter of strategy 'badge' must be an int >= 1. Got None instead."),
    ("badge", {"sketch_dim": None}, "The 'sketch_dim' parameter of strategy 'badge' must be an int >= 1. Got None instead."),
    ("badge", {"local_trials": None}, "The 'local_trials' parameter of strategy 'badge' must be an int >= 0. Got None instead."),
    ("badge", {"rounds": 2.7}, "The 'rounds' parameter of strategy 'badge' must be an int >= 1. Got 2.7 instead."),
    ("badge", {"rounds": 2.0}, "The 'rounds' parameter of strategy 'badge' must be an int >= 1. Got 2.0 instead."),
    ("badge", {"rounds": "2"}, "The 'rounds' parameter of strategy 'badge' must be an int >= 1. Got '2' instead."),
    ("badge", {"rounds": True}, "The 'rounds' parameter of strategy 'badge' must be an int >= 1. Got True instead."),
    ("badge", {"rounds": 0}, "The 'rounds' parameter of strategy 'badge' must be an int >= 1. Got 0 instead."),
    ("badge", {"oversampling": math.nan}, "The 'oversampling' parameter of strategy 'badge' must be a finite number > 0. Got nan instead."),
    ("badge", {"oversampling": math.inf}, "The 'oversampling' parameter of strategy 'badge' must be a finite number > 0. Got inf instead."),
    ("badge", {"oversampling": 0}, "The 'oversampling' parameter of strategy 'badge' must be a finite number > 0. Got 0 instead."),
    ("badge", {"oversampling": "1.5"}, "The 'oversampling' parameter of strategy 'badge' must be a finite number > 0. Got '1.5' instead."),
    ("badge", {"sketch": None}, "The 'sketch' parameter of strategy 'badge' must be one of 'tensor', 'kron', 'none'. Got None instead."),
    ("badge", {"factor_dtype": "float64"},
     "The 'factor_dtype' parameter of strategy 'badge' must be one of 'float32', 'float16'. Got 'float64' instead."),
    ("badge", {1: 2}, "The parameter names of strategy 'badge' must be strings. Got 1 instead."),
    ("cluster-margin", {"n_clusters": None}, "The 'n_clusters' parameter of strategy 'cluster-margin' must be an int >= 1. Got None instead."),
    ("cluster-margin", {"sample_size": None}, "The 'sample_size' parameter of strategy 'cluster-margin' must be an int >= 0. Got None instead."),
    ("cluster-margin", {"niter": 1.5}, "The 'niter' parameter of strategy 'cluster-margin' must be an int >= 1. Got 1.5 instead."),
    ("cluster-margin", {"candidate_multiple": math.inf},
     "The 'candidate_multiple' parameter of strategy 'cluster-margin' must be a finite number >= 1. Got inf instead."),
    ("cluster-margin", {"candidate_multiple": 10**400},
     f"The 'candidate_multiple' parameter of strategy 'cluster-margin' must be a finite number >= 1. Got {10**400} instead."),
    ("cluster-margin", {"candidate_multiple": 0.5},
     "The 'candidate_multiple' parameter of strategy 'cluster-margin' must be a finite number >= 1. Got 0.5 instead."),
    ("cluster-margin", {"embedding_dtype": 32},
     "The 'embedding_dtype' parameter of strategy 'cluster-margin' must be one of 'float32', 'float16'. Got 32 instead."),
    ("coreset", {"report_radius": "maybe"}, "The 'report_radius' parameter of strategy 'coreset' must be true or false. Got 'maybe' instead."),
    ("coreset", {"report_radius": None}, "The 'report_radius' parameter of strategy 'coreset' must be true or false. Got None instead."),
]


@pytest.mark.parametrize("strategy, params, message", REFUSED)
def test_ill_typed_or_out_of_range_parameters_are_refused_in_one_line(strategy, params, message):
    with pytest.raises(ConfigError) as err:
        _resolve(strategy, params)
    assert _one_line(err) == message


@pytest.mark.parametrize("strategy, params, message", REFUSED[:1] + REFUSED[8:9] + REFUSED[14:16] + REFUSED[18:19])
def test_select_refuses_them_before_reading_the_pool_or_starting_ray(strategy, params, message):
    # the pool and model do not exist: the parameters are checked first
    with pytest.raises(ConfigError) as err:
        alscale.select("no-such-pool.parquet", "no-such-model.onnx", strategy=strategy, k=5, strategy_params=params)
    assert _one_line(err) == message


def test_resolved_values_are_plain_ints_and_floats():
    p = _resolve("badge", {"rounds": np.int64(3), "oversampling": 2, "sketch_dim": np.uint8(8), "local_trials": 0})
    assert p == {"rounds": 3, "oversampling": 2.0, "sketch": "tensor", "sketch_dim": 8, "local_trials": 0, "factor_dtype": "float32"}
    assert [type(p[k]) for k in ("rounds", "oversampling", "sketch_dim")] == [int, float, int]
    p = _resolve("cluster-margin", {"candidate_multiple": np.float32(1.5), "n_clusters": np.int32(7), "sample_size": 0})
    assert (p["candidate_multiple"], p["n_clusters"], p["sample_size"]) == (1.5, 7, 0)
    assert type(p["candidate_multiple"]) is float and type(p["n_clusters"]) is int
    # flags as a command line (--param report_radius=yes) or numpy give them
    assert [_resolve("coreset", {"report_radius": v})["report_radius"] for v in ("yes", "off", True, np.bool_(True), 0)] == [
        True, False, True, True, False]
    # the user's keys only, resolved: what a manifest should record
    assert user_params("badge", get_strategy("badge").defaults, {"rounds": np.int64(3)}) == {"rounds": 3}
    assert type(user_params("badge", get_strategy("badge").defaults, {"rounds": np.int64(3)})["rounds"]) is int


def test_engine_keys_pass_through_and_unknown_keys_keep_their_hint():
    p = resolve_params("cluster-margin", get_strategy("cluster-margin").defaults, {"capacity": 5, "centroids": None, "n_clusters": 3})
    assert p["capacity"] == 5 and p["centroids"] is None and p["n_clusters"] == 3
    with pytest.raises(ConfigError, match="Did you mean 'rounds'"):
        _resolve("badge", {"round": 3})
    with pytest.raises(ConfigError, match="Strategy 'entropy' takes no parameters. Got 1."):
        _resolve("entropy", {1: 2})


def test_a_registered_strategy_without_rules_is_checked_by_its_defaults_types():
    defaults = {"n": 3, "x": 0.5, "flag": False, "name": "a", "anything": None}
    assert resolve_params("custom", defaults, {"n": np.int16(4), "x": 1, "flag": "true", "name": "b", "anything": [1]}) == {
        "n": 4, "x": 1.0, "flag": True, "name": "b", "anything": [1]}
    for params, message in [({"n": 1.5}, "'n' parameter of strategy 'custom' must be an int. Got 1.5"),
                            ({"x": math.nan}, "'x' parameter of strategy 'custom' must be a finite number. Got nan"),
                            ({"name": 3}, "'name' parameter of strategy 'custom' must be a string. Got 3")]:
        with pytest.raises(ConfigError, match=message):
            resolve_params("custom", defaults, params)

