"""Row-wise max, top two and sum against numpy's own reductions, on both sides of each cut-over."""

import numpy as np
import pytest

from alscale import rowwise
from alscale.rowwise import row_max, row_sum, row_top2

# narrow (column walk) and wide (numpy's reduction) for every function
WIDTHS = (1, 2, 3, 10, rowwise.MAX_COLUMNS_FOR_SUM, rowwise.MAX_COLUMNS_FOR_SUM + 1, rowwise.MAX_COLUMNS_FOR_MAX + 1, rowwise.MAX_COLUMNS_FOR_TOP2 + 1, 300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", WIDTHS)
def test_row_max_and_top2_equal_a_sort(c, dtype):
    x = np.random.default_rng(c).standard_normal((257, c)).astype(dtype)
    ordered = np.sort(x, axis=1)
    np.testing.assert_array_equal(row_max(x), ordered[:, -1])
    first, second = row_top2(x)
    np.testing.assert_array_equal(first, ordered[:, -1])
    np.testing.assert_array_equal(second, ordered[:, -2] if c > 1 else np.full(257, -np.inf))
    assert row_max(x).dtype == first.dtype == second.dtype == dtype


@pytest.mark.parametrize("c", WIDTHS)
def test_row_sum_matches_numpy(c):
    x = np.random.default_rng(c).random((257, c), dtype=np.float32)
    got = row_sum(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x.sum(axis=1, dtype=np.float64), rtol=1e-6)


@pytest.mark.parametrize("c", [4, rowwise.MAX_COLUMNS_FOR_TOP2 + 6])
def test_a_tied_maximum_is_also_the_second_value(c):
    x = np.random.default_rng(0).random((50, c))
    x[:, 1] = x[:, c - 2] = 2.0  # the largest value twice in every row
    first, second = row_top2(x)
    assert (first == 2.0).all() and (second == 2.0).all()


def test_views_and_empty_arrays():
    x = np.random.default_rng(0).random((40, 12))
    view = x[::3, 2:9]  # neither row nor column contiguous
    np.testing.assert_array_equal(row_max(view), view.max(axis=1))
    np.testing.assert_array_equal(row_top2(view)[1], np.sort(view, axis=1)[:, -2])
    empty = np.empty((0, 5), dtype=np.float32)
    assert row_max(empty).shape == row_sum(empty).shape == row_top2(empty)[1].shape == (0,)
