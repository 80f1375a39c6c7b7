from __future__ import annotations

import numpy as np
import pytest

from alscale.exceptions import ConfigError
from alscale.loop.stopping import (
    budget_spent,
    check_stopping,
    diminishing_returns,
    metric_gain,
    stabilizing_predictions,
    target_reached,
)


def _history(labels, accs):
    return [{"labels": n, "metrics": {"accuracy": a, "log_loss": 1 - a}} for n, a in zip(labels, accs)]


def test_target_reached():
    h = _history([10, 20, 30], [0.5, 0.7, 0.91])
    assert target_reached(h, target=0.9).stop
    assert not target_reached(h[:2], target=0.9).stop
    assert not target_reached(h, target=None).stop
    assert target_reached(h, metric="log_loss", target=0.1).stop  # 0.09 <= 0.1
    assert not target_reached(h[:2], metric="log_loss", target=0.1).stop
    with pytest.raises(ConfigError):
        target_reached(h, metric="auc", target=0.5)


def test_diminishing_returns_uses_gain_per_label():
    # gains: 0.2/10, 0.001/10, 0.0005/10, 0.0/10  -> last 3 per-label gains < 1e-3
    h = _history([10, 20, 30, 40, 50], [0.5, 0.7, 0.701, 0.7015, 0.7015])
    v = diminishing_returns(h, patience=3, min_gain_per_label=1e-3)
    assert v.stop
    assert v.evidence["gains_per_label"] == pytest.approx([1e-4, 5e-5, 0.0])
    assert not diminishing_returns(h[:4], patience=3, min_gain_per_label=1e-3).stop  # one big gain in window
    assert not diminishing_returns(h[:3], patience=3, min_gain_per_label=1e-3).stop  # too few rounds
    # same metric gains, but spread over 1 label each -> large per-label gains, no stop
    h2 = _history([10, 11, 12, 13], [0.5, 0.502, 0.504, 0.506])
    assert not diminishing_returns(h2, patience=3, min_gain_per_label=1e-3).stop



def test_a_gain_is_positive_when_the_metric_gets_better_for_losses_too():
    h = _history([10, 20], [0.5, 0.6])  # log loss 0.5 -> 0.4
    assert metric_gain(h[0], h[1], "accuracy") == pytest.approx(0.1)
    assert metric_gain(h[0], h[1], "log_loss") == pytest.approx(0.1)
    v = diminishing_returns(_history([10, 20, 30, 40], [0.5, 0.6, 0.7, 0.8]), metric="log_loss", patience=3, min_gain_per_label=1e-3)
    assert v.evidence["gains_per_label"] == pytest.approx([0.01, 0.01, 0.01]) and not v.stop


def test_a_gain_is_measured_on_the_same_evaluation_rows():
    """The evaluation set fills up as its labels arrive: 300 rows then 1,000 are not comparable as they are."""
    prev = {"round": 1, "labels": 60, "metrics": {"accuracy": 0.80, "evaluation_labeled": 300}}
    cur = {"round": 2, "labels": 120, "metrics": {"accuracy": 0.70, "evaluation_labeled": 1000}}
    assert np.isnan(metric_gain(prev, cur, "accuracy"))  # harder new rows are no loss of the model's
    measured = {**cur, "previous_model_metrics": {"round": 1, "accuracy": 0.65, "evaluation_labeled": 1000}}
    assert metric_gain(prev, measured, "accuracy") == pytest.approx(0.05)  # round 1's model on round 2's rows
    other = {**cur, "previous_model_metrics": {"round": 0, "accuracy": 0.65}}  # measured against another round
    assert np.isnan(metric_gain(prev, other, "accuracy"))
    same_rows = {**cur, "metrics": {"accuracy": 0.70, "evaluation_labeled": 300}}
    assert metric_gain(prev, same_rows, "accuracy") == pytest.approx(-0.10)
    later = [{**cur, "round": r, "labels": 60 * r, "metrics": {"accuracy": 0.70, "evaluation_labeled": 1000}} for r in (3, 4)]
    v = diminishing_returns([prev, cur, *later], patience=3, min_gain_per_label=1e-3)  # gains: not measured, 0, 0
    assert not v.stop and v.evidence["gains_per_label"] == [0.0, 0.0] and v.evidence["rounds_not_measured"] == 1


def test_rounds_without_a_metric_never_count_as_diminishing_returns():
    nan = float("nan")
    h = _history([10, 20, 30, 40], [nan, nan, nan, nan])  # no evaluation labels yet
    v = diminishing_returns(h, patience=3, min_gain_per_label=1e-3)
    assert not v.stop and v.reason == "0 of 3 rounds with a gain in accuracy measured on the same evaluation rows so far"
    # one measured gain below the threshold is not three: it used to stop here
    mixed = _history([10, 20, 30, 40], [0.5, 0.5001, nan, nan])
    v = diminishing_returns(mixed, patience=3, min_gain_per_label=1e-3)
    assert not v.stop and v.evidence["gains_per_label"] == pytest.approx([1e-5]) and v.evidence["rounds_not_measured"] == 2


def test_the_rule_looks_at_the_last_measured_gains_past_unmeasured_rounds():
    """A workspace made before gains were measured on the same rows: the rounds in between tell nothing either way."""
    grown = [{"round": r, "labels": 10 * (r + 1), "metrics": {"accuracy": a, "evaluation_labeled": n}}
             for r, (a, n) in enumerate([(0.5, 100), (0.5001, 200), (0.5002, 300), (0.5003, 300), (0.5003, 300)])]
    v = diminishing_returns(grown, patience=3, min_gain_per_label=1e-3)
    assert not v.stop and len(v.evidence["gains_per_label"]) == 2  # two rounds on other rows: 2 of 3 measured
    v = diminishing_returns([*grown, {**grown[-1], "round": 5, "labels": 60}], patience=3, min_gain_per_label=1e-3)
    assert v.stop and v.evidence["gains_per_label"] == pytest.approx([1e-5, 0.0, 0.0]) and v.evidence["rounds_not_measured"] == 2


def test_stabilizing_predictions_kappa_window():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 4, 500)
    noisy = [np.where(rng.random(500) < 0.3, rng.integers(0, 4, 500), base) for _ in range(2)]
    stable = [base.copy() for _ in range(4)]
    stable[1][:2] = (stable[1][:2] + 1) % 4  # near-identical: kappa ~0.995
    v = stabilizing_predictions(noisy + stable, kappa_threshold=0.99, patience=3)
    assert v.stop and min(v.evidence["kappas"]) >= 0.99
    v = stabilizing_predictions(noisy + stable[:2], kappa_threshold=0.99, patience=3)
    assert not v.stop


def test_stabilizing_predictions_compares_only_models_trained_on_more_labels():
    """Rounds that added no labels retrain on the same labels: their models agree by construction."""
    rng = np.random.default_rng(1)
    first = rng.integers(0, 3, 200)
    same = [first.copy() for _ in range(4)]  # one model, retrained three times on the same 60 labels
    v = stabilizing_predictions(same, labels=[60, 60, 60, 60], kappa_threshold=0.99, patience=3)
    assert not v.stop and v.evidence["kappas"] == [] and v.evidence["pairs_without_new_labels"] == 3
    assert v.reason == "0 of 3 comparisons of a model with one trained on fewer labels so far"
    grown = same + [first.copy(), first.copy()]
    v = stabilizing_predictions(grown, labels=[60, 60, 60, 60, 100, 140], kappa_threshold=0.99, patience=3)
    assert not v.stop and v.evidence["kappas"] == [1.0, 1.0]
    v = stabilizing_predictions(grown + [first.copy()], labels=[60, 60, 60, 60, 100, 140, 180], kappa_threshold=0.99, patience=3)
    assert v.stop and v.evidence["kappas"] == [1.0, 1.0, 1.0]
    out = check_stopping(_history([60, 60, 60, 60], [0.5] * 4), same, prediction_labels=[60, 60, 60, 60])
    assert not out["stop"]
    with pytest.raises(ConfigError, match=r"Expected one training-label count per stop-set prediction \(4\). Got 3."):
        stabilizing_predictions(same, labels=[60, 60, 60])


def test_budget_and_check_stopping():
    h = _history([100, 200], [0.5, 0.6])
    assert budget_spent(h, budget=200).stop
    assert not budget_spent(h, budget=201).stop
    out = check_stopping(h, [], budget=200, target=0.9)
    assert out["stop"] and out["reasons"] == ["budget: 200 labels used of a budget of 200"]
    assert [r["rule"] for r in out["rules"]] == ["target", "diminishing_returns", "stabilizing_predictions", "budget"]
