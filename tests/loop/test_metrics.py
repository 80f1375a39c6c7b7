from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from alscale.exceptions import ModelContractError
from alscale.loop.metrics import (
    cohen_kappa,
    evaluate,
    expected_calibration_error,
    log_loss,
    macro_f1,
    per_class_recall,
)


def _ece_reference(y, p, n_bins):
    """Loop-over-bins ECE as written in Guo et al. 2017."""
    conf = p.max(axis=1)
    pred = p.argmax(axis=1)
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs((pred[in_bin] == y[in_bin]).mean() - conf[in_bin].mean())
    return total


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn_and_reference(seed):
    rng = np.random.default_rng(seed)
    n, c = 400, 4
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[y] * rng.random((n, 1))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = p.argmax(1)
    m = evaluate(y, p, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=range(c)))
    rec = skm.recall_score(y, pred, average=None, labels=range(c))
    assert [m["per_class_recall"][k] for k in "abcd"] == pytest.approx(rec.tolist())
    for bins in (5, 10, 15):
        assert expected_calibration_error(y, p, bins) == pytest.approx(_ece_reference(y, p, bins), abs=1e-12)


def test_ece_perfectly_calibrated_and_overconfident():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.tile([[0.75, 0.25]], (8, 1))  # confidence 0.75, accuracy 0.5
    assert expected_calibration_error(y, p, 10) == pytest.approx(0.25)
    y = np.array([0, 0, 0, 1])
    assert expected_calibration_error(y, np.tile([[0.75, 0.25]], (4, 1)), 10) == pytest.approx(0.0)


def test_absent_class_recall_is_none_and_macro_f1_matches_sklearn():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    assert np.isnan(per_class_recall(y, pred, 3)[2])
    assert macro_f1(y, pred, 3) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert log_loss(np.array([0]), np.array([[1.0, 0.0]])) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_kappa_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 5, 200))
    assert cohen_kappa(a, b) == pytest.approx(skm.cohen_kappa_score(a, b))
    assert cohen_kappa(a, a) == pytest.approx(1.0)


def test_probability_shape_mismatch():
    with pytest.raises(ModelContractError, match="Expected probabilities of shape"):
        evaluate([0, 1], np.ones((2, 3)) / 3, ["a", "b"])
