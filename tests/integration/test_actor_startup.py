"""What happens while the shard actors start: their errors, their strategy, their end."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import ray

import alscale
from alscale.engine import driver
from alscale.exceptions import ModelError
from alscale.reduce import top_k_order
from alscale.strategies import STRATEGIES, Strategy, register
from tests.conftest import read_pool_arrays, reference_probs, tied_features, write_pool

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return write_pool(tmp_path_factory.mktemp("pool") / "pool", tied_features(1200), files=2, row_group_size=300)


def _wait_for_free_cpus(timeout: float = 20.0) -> float:
    """The CPUs free once every actor this module started is gone (each holds one)."""
    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        free = ray.available_resources().get("CPU", 0)
        if free == total:
            return free
        time.sleep(0.2)
    return ray.available_resources().get("CPU", 0)


def test_an_error_in_the_actors_start_up_is_the_users_error(pool, model_path, tmp_path, monkeypatch):
    """A model the actors cannot load (gone from their node) is a ModelError naming it, not a Ray crash."""
    model = shutil.copy(model_path, tmp_path / "model.onnx")
    prepare = driver.prepare_run

    def prepare_then_lose_the_model(settings):
        run = prepare(settings)  # the driver read the model ...
        os.remove(model)  # ... the actors' node has no such file
        return run

    monkeypatch.setattr(driver, "prepare_run", prepare_then_lose_the_model)
    with pytest.raises(ModelError) as info:
        alscale.select(pool, model, strategy="entropy", k=5, actors=2)
    assert str(model) in str(info.value) and "\n" not in str(info.value)
    assert _wait_for_free_cpus() == ray.cluster_resources()["CPU"]


def test_actors_are_killed_when_their_start_is_interrupted(pool, model_path, monkeypatch):
    """Ctrl-C (here: an error) once the actors are up: none of them keeps its CPU, even while the error is held."""
    wait = driver._wait_for_actors

    def up_then_interrupted(actors, cpus, warn_after=30.0):
        wait(actors, cpus, warn_after)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(driver, "_wait_for_actors", up_then_interrupted)
    with pytest.raises(RuntimeError, match="interrupted") as info:  # info keeps the traceback, and with it the frames
        alscale.select(pool, model_path, strategy="entropy", k=5, actors=3)
    assert info.value is not None
    assert _wait_for_free_cpus() == ray.cluster_resources()["CPU"]


def test_a_strategy_registered_in_the_driver_scores_on_the_actors(pool, model_path):
    """``register`` in the user's process only: the actors get the strategy itself, not its name."""

    def second_choice(batch):  # the probability of the runner-up class: a closure the actors cannot import
        return np.sort(batch.probs, axis=1)[:, -2].astype(np.float32)

    register(Strategy("test-second-choice", "topk", second_choice, description="runner-up probability"))
    try:
        m = alscale.select(pool, model_path, strategy="test-second-choice", k=40, actors=2, batch_size=250)
    finally:
        STRATEGIES.pop("test-second-choice")
    ids, X = read_pool_arrays(pool)
    scores = np.sort(reference_probs(model_path, X), axis=1)[:, -2].astype(np.float32)
    assert m.ids == ids[top_k_order(scores, ids, 40)].tolist()
    assert m.data["strategy"]["name"] == "test-second-choice"


def test_a_registered_strategy_that_scores_nan_is_refused(pool, model_path):
    """NaN would be dropped by the actors' admission test while the reduce ranks it as -inf: refused instead."""
    from alscale.exceptions import StrategyError

    def nan_for_some(batch):
        scores = batch.probs[:, 0].astype(np.float32)
        scores[::7] = np.nan
        return scores

    register(Strategy("test-nan", "topk", nan_for_some))
    try:
        with pytest.raises(StrategyError, match=r"Expected numbers from strategy 'test-nan' .* Got NaN for \d+ of \d+ rows"):
            alscale.select(pool, model_path, strategy="test-nan", k=10, actors=2)
    finally:
        STRATEGIES.pop("test-nan")
