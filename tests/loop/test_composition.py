from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from alscale.loop.composition import chance_js_divergence, compare_distributions, composition_report, js_divergence


@pytest.mark.parametrize("seed", range(5))
def test_js_divergence_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    p, q = rng.random(6), rng.random(6)
    p[seed % 6] = 0.0
    assert js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)


def test_over_and_under_represented_and_warning():
    labeled = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    population = ["a"] * 20 + ["b"] * 30 + ["c"] * 50
    r = compare_distributions(labeled, population, threshold=0.05, name="site")
    assert r["over"][0]["value"] == "a" and r["over"][0]["difference"] == pytest.approx(0.4)
    assert r["under"][0]["value"] == "c" and r["under"][0]["difference"] == pytest.approx(-0.4)
    ref = jensenshannon([0.6, 0.3, 0.1], [0.2, 0.3, 0.5], base=2) ** 2
    assert r["js_divergence"] == pytest.approx(ref)
    assert r["warn"] and r["message"].startswith("site JSD")
    same = compare_distributions(population[::2], population[1::2] + population[::2], threshold=0.05)
    assert not same["warn"]


def test_report_collects_warnings():
    rep = composition_report([0] * 30 + [1] * 10, [0] * 10 + [1] * 30, {"src": (["x"] * 40, ["x", "y", "y", "y"] * 10)}, threshold=0.05)
    assert len(rep["warnings"]) == 2
    # the same shares in 4 labels are what chance gives: no evidence of a skew
    rep = composition_report([0, 0, 0, 1], [0, 1, 1, 1], {"src": (["x", "x"], ["x", "y", "y", "y"])}, threshold=0.05)
    assert rep["warnings"] == [] and rep["classes"]["js_divergence"] > 0.05
    rep = composition_report([0, 1], [0, 1], {"src": (["x", "y"], ["y", "x"])}, threshold=0.05)
    assert rep["warnings"] == []


def test_nothing_to_compare_is_no_divergence_and_no_warning():
    """An evaluation set with no labels yet: the labeled set's classes match nothing, which is not a JSD of 0."""
    r = compare_distributions(["a", "b"], [], threshold=0.05)
    assert r["js_divergence"] is None and r["warn"] is False and r["message"] == ""
    assert composition_report(["a"], [])["classes"]["js_divergence"] is None


def test_the_composition_plot_leaves_a_gap_for_a_round_without_a_divergence(tmp_path):
    from alscale.loop.plots import plot_composition

    import matplotlib.pyplot as plt

    history = [{"labels": 20, "composition": {"classes_jsd": None, "groups_jsd": {"site": 0.1}}},
               {"labels": 40, "composition": {"classes_jsd": 0.02, "groups_jsd": {}}}]
    drawn = []
    real_plot = plt.Axes.plot

    def spy(ax, x, y, *args, **kwargs):
        drawn.append(list(y))  # as given: None would be drawn as a gap only by matplotlib's grace
        return real_plot(ax, x, y, *args, **kwargs)

    plt.Axes.plot = spy
    try:
        assert plot_composition(history, tmp_path / "c.png").stat().st_size > 0
    finally:
        plt.Axes.plot = real_plot
    classes, site = drawn
    assert isinstance(classes[0], float) and np.isnan(classes[0]) and classes[1] == 0.02  # a gap, never a 0 or a None
    assert site[0] == 0.1 and np.isnan(site[1])  # a group the round did not report


@pytest.mark.parametrize("k, n, m", [(5, 2000, 2000), (10, 1000, 4000), (3, 5000, 200_000)])
def test_chance_divergence_is_the_chi_square_quantile_for_large_samples(k, n, m):
    """For large samples, JSD in nats is about chi2(k-1) * (n+m) / (8 n m) under the null (a G-test's expansion)."""
    from scipy.stats import chi2

    shares = np.arange(1, k + 1, dtype=float)
    expected = chi2.ppf(0.95, k - 1) * (n + m) / (8 * n * m * np.log(2))
    assert chance_js_divergence(shares, n, m, draws=4000) == pytest.approx(expected, rel=0.1)
    assert chance_js_divergence(shares, n, m) == chance_js_divergence(shares, n, m)  # seeded: the same answer
    assert chance_js_divergence([1.0, 0.0], n, m) == 0.0 and chance_js_divergence(shares, 0, m) == 0.0


def test_a_small_random_sample_is_rarely_called_skewed_but_a_real_skew_is():
    """30 labels drawn uniformly from 10 balanced classes pass 0.05 bits more often than not: chance must not warn."""
    rng = np.random.default_rng(0)
    population = [str(c) for c in range(10)] * 100
    warned = sum(compare_distributions(rng.choice(population, 30).tolist(), population, threshold=0.05)["warn"] for _ in range(200))
    plain = sum(js_divergence(*[np.bincount(rng.choice(10, 30), minlength=10), np.ones(10)]) > 0.05 for _ in range(200))
    assert plain > 100 and warned <= 20  # about 1 in 20 by construction (the 95th percentile)
    skewed = ["0"] * 20 + [str(c) for c in range(1, 10)]  # two thirds one class
    assert compare_distributions(skewed, population, threshold=0.05)["warn"]


def test_chance_for_a_column_of_very_many_values_is_not_drawn():
    """200 draws of 100,000 values took 5 s and 900 MB per round and column; beyond the cap the column is not tested."""
    from alscale.loop.composition import MAX_VALUES_TESTED

    assert chance_js_divergence(np.ones(MAX_VALUES_TESTED + 1), 300, 10**6) == 1.0
    many = chance_js_divergence(np.ones(50_000), 300, 10**6)  # at most 4M shares a side: 80 draws
    assert 0.9 < many < 1.0
    padded = np.concatenate([np.arange(1.0, 6.0), np.zeros(MAX_VALUES_TESTED)])  # values no side holds change nothing
    assert chance_js_divergence(padded, 300, 400) == chance_js_divergence(np.arange(1.0, 6.0), 300, 400)
