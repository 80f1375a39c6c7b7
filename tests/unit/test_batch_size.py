"""``batch_size="auto"``: the cheapest batch size per row, from timings of the real model."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from alscale.config import make_settings
from alscale.engine.worker import MAX_READ_RUNS, READ_BATCH_BYTES, read_batch_rows
from alscale.exceptions import ConfigError
from alscale.model import ModelRunner, inspect_model
from alscale.model.session import (
    BATCH_SIZE_CANDIDATES,
    DEFAULT_BATCH_SIZE,
    MAX_AUTO_BATCH_BYTES,
    PER_BATCH_OVERHEAD_S,
    SWITCH_MARGIN,
    choose_batch_size,
)


def _reference(seconds, overhead, default, margin):
    """The rule written out: per-row cost of every size; the default unless one saves > margin."""
    costs = {b: (s + overhead) / b for b, s in seconds.items()}
    best = min(costs.values())
    cheapest = min(b for b, c in costs.items() if c == best)
    if default in costs and costs[cheapest] >= (1 - margin) * costs[default]:
        return default
    return cheapest


# microseconds per row of raw onnxruntime, one thread, measured for MLPs 64-H-10
WIDE_4096 = {512: 8.79, 1024: 9.97, 2048: 11.1}
WIDE_1024 = {512: 1.94, 1024: 1.98, 2048: 2.25}
NARROW_256 = {512: 0.506, 1024: 0.513, 2048: 0.530}


@pytest.mark.parametrize(
    ("per_row_us", "overhead", "margin", "expected"),
    [
        (WIDE_4096, 100e-6, 0.08, 512),  # activations of 2,048 rows leave the cache: 20% saved
        (WIDE_1024, 100e-6, 0.08, 1024),  # 10% saved
        (NARROW_256, 100e-6, 0.08, 2048),  # nearly flat: the per-batch overhead keeps the default
        (NARROW_256, 0.0, 0.0, 512),  # no overhead, no margin: the fastest model time per row
        (NARROW_256, 0.0, 0.08, 2048),  # 4.5% saved is inside the margin
        ({1024: 1.0, 512: 1.0}, 0.0, 0.0, 512),  # default not timed, a tie: the smaller size
    ],
)
def test_choose_batch_size_follows_the_rule(per_row_us, overhead, margin, expected):
    seconds = {b: us * 1e-6 * b for b, us in per_row_us.items()}
    assert choose_batch_size(seconds, overhead, default=2048, margin=margin) == expected
    assert expected == _reference(seconds, overhead, 2048, margin)


def test_choose_batch_size_needs_a_timing():
    with pytest.raises(ValueError, match="at least one"):
        choose_batch_size({})


def test_runner_times_real_sizes_and_picks_from_them(model_path):
    runner = ModelRunner([inspect_model(model_path)])
    size, seconds = runner.fastest_batch_size(8)
    assert size in BATCH_SIZE_CANDIDATES and size in seconds
    assert set(seconds) == set(BATCH_SIZE_CANDIDATES)
    assert all(s > 0 for s in seconds.values())
    assert size == _reference(seconds, PER_BATCH_OVERHEAD_S, DEFAULT_BATCH_SIZE, SWITCH_MARGIN)  # the pick follows from the timings it reports


def test_runner_never_tries_a_feature_block_over_the_limit(model_factory):
    width = 8192  # rows of 32 KiB: 2,048 of them would be 64 MiB of features
    runner = ModelRunner([inspect_model(model_factory(n_features=width))])
    size, seconds = runner.fastest_batch_size(width, seconds_per_size=0.0)
    assert sorted(seconds) == [512, 1024] and max(seconds) * width * 4 <= MAX_AUTO_BATCH_BYTES
    assert size in seconds


def test_settings_take_auto_or_a_positive_int():
    assert make_settings(pool="p", model=["m"]).batch_size == "auto"
    assert make_settings(pool="p", model=["m"], batch_size=1024).batch_size == 1024
    for bad in (0, "fast", 2.5):
        with pytest.raises(ConfigError, match=r"The 'batch_size' parameter must be 'auto' or an int >= 1\. Got "):
            make_settings(pool="p", model=["m"], batch_size=bad)


@pytest.mark.parametrize(("per_row_us", "expected"), [(WIDE_4096, 512), (NARROW_256, 2048)])
def test_default_rule_on_measured_models(per_row_us, expected):
    """The module's overhead and margin keep narrow models at 2,048 and move wide ones down."""
    seconds = {b: us * 1e-6 * b for b, us in per_row_us.items()}
    assert choose_batch_size(seconds) == expected == _reference(seconds, PER_BATCH_OVERHEAD_S, DEFAULT_BATCH_SIZE, SWITCH_MARGIN)


@pytest.mark.parametrize(
    ("model_rows", "row_bytes", "expected"),
    [
        (2048, 256, 4096),  # 64 float32 features: 1 MiB holds two runs
        (1024, 256, 4096),
        (512, 3072, 512),  # a run of wide rows already passes 1 MiB: one run per read
        (128, 32, 128 * MAX_READ_RUNS),  # narrow rows: at most MAX_READ_RUNS runs
        (3000, 100, 3000 * 3),  # sizes need not be powers of two
    ],
)
def test_read_batches_hold_whole_model_runs(model_rows, row_bytes, expected):
    rows = read_batch_rows(model_rows, row_bytes)
    assert rows == expected
    assert rows % model_rows == 0
    assert rows == model_rows or rows * row_bytes <= READ_BATCH_BYTES


@pytest.mark.parametrize("output", ["probabilities", "logits"])
def test_runner_scores_in_slices_as_in_one_run(model_factory, output):
    """Slicing a batch into model runs changes nothing: the same probabilities and embeddings."""
    path = model_factory(3, output=output)
    X = np.random.default_rng(3).normal(size=(1000, 8)).astype(np.float32)
    whole = ModelRunner([inspect_model(path)], want_embeddings=True)
    sliced = ModelRunner([inspect_model(path)], want_embeddings=True)
    sliced.rows_per_run = 128  # 7 full runs and one of 104 rows
    a, b = whole(X), sliced(X)
    np.testing.assert_array_equal(b.probs, a.probs)
    np.testing.assert_array_equal(b.embeddings, a.embeddings)
    # against one plain onnxruntime session over the whole array
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out, emb = session.run([output, "embedding"], {"features": X})
    if output == "logits":
        out = np.exp(out - out.max(1, keepdims=True))
        out /= out.sum(1, keepdims=True)
    np.testing.assert_allclose(b.probs, out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.embeddings, emb, rtol=1e-6)


def test_runner_slices_a_committee(model_factory):
    members = [inspect_model(model_factory(seed)) for seed in (4, 5, 6)]
    X = np.random.default_rng(4).normal(size=(300, 8)).astype(np.float32)
    sliced = ModelRunner(members)
    sliced.rows_per_run = 64
    out = sliced(X)
    each = [ModelRunner([m])(X).probs for m in members]
    np.testing.assert_array_equal(out.member_probs, np.stack(each))
    np.testing.assert_allclose(out.probs, np.mean(each, axis=0), rtol=1e-6)
