"""``batch_size="auto"``: the cheapest batch size per row, from timings of the real model."""

from __future__ import annotations

import pytest

from alscale.config import make_settings
from alscale.exceptions import ConfigError
from alscale.model import ModelRunner, inspect_model
from alscale.model.session import (
    BATCH_SIZE_CANDIDATES,
    MAX_AUTO_BATCH_BYTES,
    choose_batch_size,
)


def _brute_force(seconds, overhead):
    """The reference: per-row cost of every size, written out."""
    costs = {b: (s + overhead) / b for b, s in seconds.items()}
    best = min(costs.values())
    return min(b for b, c in costs.items() if c == best)


@pytest.mark.parametrize(
    ("per_row_us", "overhead", "expected"),
    [
        # a wide model (4,096 hidden units), seconds per row grow with the batch: small wins
        ({512: 8.79, 1024: 9.97, 2048: 11.1, 4096: 11.1}, 150e-6, 512),
        # 1,024 hidden units
        ({512: 1.94, 1024: 1.98, 2048: 2.25, 4096: 2.55}, 150e-6, 1024),
        # 256 hidden units: nearly flat, so the per-batch overhead decides: large wins
        ({512: 0.506, 1024: 0.513, 2048: 0.530, 4096: 0.540}, 150e-6, 4096),
        # without overhead the fastest model time per row wins
        ({512: 0.506, 1024: 0.513, 2048: 0.530, 4096: 0.540}, 0.0, 512),
        # an exact tie goes to the smaller size
        ({1024: 1.0, 2048: 1.0}, 0.0, 1024),
    ],
)
def test_choose_batch_size_matches_brute_force(per_row_us, overhead, expected):
    seconds = {b: us * 1e-6 * b for b, us in per_row_us.items()}
    assert choose_batch_size(seconds, overhead) == expected == _brute_force(seconds, overhead)


def test_choose_batch_size_needs_a_timing():
    with pytest.raises(ValueError, match="at least one"):
        choose_batch_size({})


def test_runner_times_real_sizes_and_picks_from_them(model_path):
    runner = ModelRunner([inspect_model(model_path)])
    size, seconds = runner.fastest_batch_size(8)
    assert size in BATCH_SIZE_CANDIDATES and size in seconds
    assert set(seconds) <= set(BATCH_SIZE_CANDIDATES) and min(seconds) == min(BATCH_SIZE_CANDIDATES)
    assert all(s > 0 for s in seconds.values())
    assert size == choose_batch_size(seconds)  # the pick follows from the timings it reports


def test_runner_never_tries_a_feature_block_over_the_limit(model_factory):
    width = 4096  # rows of 16 KiB: 8,192 of them would be 128 MiB of features
    runner = ModelRunner([inspect_model(model_factory(n_features=width))])
    size, seconds = runner.fastest_batch_size(width, seconds_per_size=0.0)
    assert max(seconds) * width * 4 <= MAX_AUTO_BATCH_BYTES
    assert size in seconds


def test_settings_take_auto_or_a_positive_int():
    assert make_settings(pool="p", model=["m"]).batch_size == "auto"
    assert make_settings(pool="p", model=["m"], batch_size=1024).batch_size == 1024
    for bad in (0, "fast", 2.5):
        with pytest.raises(ConfigError, match=r"The 'batch_size' parameter must be 'auto' or an int >= 1\. Got "):
            make_settings(pool="p", model=["m"], batch_size=bad)
