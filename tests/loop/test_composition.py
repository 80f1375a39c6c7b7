from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from alscale.loop.composition import compare_distributions, composition_report, js_divergence


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
    rep = composition_report([0, 0, 0, 1], [0, 1, 1, 1], {"src": (["x", "x"], ["x", "y", "y", "y"])}, threshold=0.05)
    assert len(rep["warnings"]) == 2
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
