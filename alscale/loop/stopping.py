"""Stopping rules: when labeling more stops paying off, each verdict with its evidence.

Each rule looks at the round history (a list of per-round dicts with at least ``labels`` (the
number of training labels) and ``metrics`` (see :func:`alscale.loop.metrics.evaluate`)) and
returns a :class:`Verdict`.  :func:`check_stopping` runs them all.

* :func:`target_reached` - the chosen metric reached a target.
* :func:`diminishing_returns` - over the last ``patience`` rounds, the metric gained less than
  ``min_gain_per_label`` per labeled example (Δmetric / Δlabels, round over round, on the same
  evaluation rows: :func:`metric_gain`).
* :func:`stabilizing_predictions` - Cohen's kappa between the predictions of successive models
  on a fixed random *stop set* stayed at or above ``kappa_threshold`` for ``patience`` comparisons;
  a model is compared with the one before it only where it was trained on more labels (a round
  that added none retrains on the same labels, and its agreement tells nothing).
* :func:`budget_spent` - the labels used reached the budget.

References
----------
Bloodgood, M. and Vijay-Shanker, K. (2009). A Method for Stopping Active Learning Based on
Stabilizing Predictions and the Need for User-Adjustable Stopping. CoNLL 2009, 39-47.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from alscale.config import check_int
from alscale.exceptions import ConfigError
from alscale.loop.metrics import cohen_kappa

__all__ = ["Verdict", "budget_spent", "check_stopping", "diminishing_returns", "metric_gain", "stabilizing_predictions",
           "target_reached"]

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "log_loss": False, "ece": False}


@dataclass
class Verdict:
    """One rule's answer.

    Attributes
    ----------
    rule : str
    stop : bool
    reason : str
        One sentence with the numbers behind the verdict.
    evidence : dict
    """

    rule: str
    stop: bool
    reason: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _metric(entry: dict, metric: str) -> float:
    value = entry.get("metrics", {}).get(metric)
    return float("nan") if value is None else float(value)


def metric_gain(prev: dict, cur: dict, metric: str) -> float:
    """How much better round ``cur``'s ``metric`` is than round ``prev``'s: positive = better, for losses too.

    The evaluation set fills up as its labels arrive, so two rounds may have measured their
    models on different rows.  A round records the earlier model's metrics on its own rows
    (``previous_model_metrics``: ``{"round": n, metric: value, ...}``); the gain is measured
    against those where they are ``prev``'s.  Without them, two rounds are compared only if both
    measured on as many labeled evaluation rows (``metrics["evaluation_labeled"]``; the set only
    grows), or neither says.

    Parameters
    ----------
    prev, cur : dict
        Round records (or history entries): ``round``, ``metrics``, optionally
        ``previous_model_metrics``.
    metric : str
        One of ``HIGHER_IS_BETTER``.

    Returns
    -------
    float
        NaN where the two are not comparable or a metric is missing.
    """
    _check_metric(metric)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    base = cur.get("previous_model_metrics") or {}
    if base.get("round") is not None and base.get("round") == prev.get("round") and base.get(metric) is not None:
        before = float(base[metric])
    elif (prev.get("metrics") or {}).get("evaluation_labeled") == (cur.get("metrics") or {}).get("evaluation_labeled"):
        before = _metric(prev, metric)
    else:
        return math.nan
    return sign * (_metric(cur, metric) - before)


def _check_metric(metric: str) -> None:
    if metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"The stopping metric must be one of {sorted(HIGHER_IS_BETTER)}. Got {metric!r} instead.")


def target_reached(history: Sequence[dict], *, metric: str = "accuracy", target: float | None = None) -> Verdict:
    """Stop once the latest round's ``metric`` reaches ``target`` (>= or, for losses, <=)."""
    _check_metric(metric)
    if target is None or not history:
        return Verdict("target", False, "No target set." if target is None else "No rounds yet.", {"target": target})
    value = _metric(history[-1], metric)
    hit = value >= target if HIGHER_IS_BETTER[metric] else value <= target
    op = ">=" if HIGHER_IS_BETTER[metric] else "<="
    reason = f"{metric} {value:.4f} {op} target {target}" if hit else f"{metric} {value:.4f}, target {target} not reached"
    return Verdict("target", bool(hit), reason, {"metric": metric, "value": value, "target": target})


def diminishing_returns(history: Sequence[dict], *, metric: str = "accuracy", patience: int = 3,
                        min_gain_per_label: float = 1e-4) -> Verdict:
    """Stop when each of the last ``patience`` rounds gained < ``min_gain_per_label`` per label.

    The gain of round t is ``(m_t - m_{t-1}) / (labels_t - labels_{t-1})`` (sign flipped for
    losses; measured on round t's evaluation rows where it recorded the earlier model's metrics
    there: :func:`metric_gain`); rounds that added no labels are skipped, and so is a gain not
    measured (no metric, or rounds measured on different rows): the rule needs ``patience``
    measured gains.
    """
    _check_metric(metric)
    patience = check_int("patience", patience, 1)
    gains = []
    for prev, cur in zip(history[:-1], history[1:]):
        added = int(cur["labels"]) - int(prev["labels"])
        if added > 0:
            gains.append(metric_gain(prev, cur, metric) / added)
    # a gain not measured (no metric, or not on the same evaluation rows) tells nothing either way: the rule
    # looks at the last `patience` measured ones
    recent = [g for g in gains if not math.isnan(g)][-patience:]
    evidence = {"metric": metric, "gains_per_label": recent, "threshold": min_gain_per_label, "patience": patience,
                "rounds_not_measured": len(gains) - len([g for g in gains if not math.isnan(g)])}
    if len(recent) < patience:
        return Verdict("diminishing_returns", False, f"{len(recent)} of {patience} rounds with a gain in {metric} measured on the "
                       f"same evaluation rows so far", evidence)
    stop = all(g < min_gain_per_label for g in recent)
    worst = max(recent)
    reason = (f"gain per label below {min_gain_per_label:g} for {patience} rounds (max {worst:.2e})" if stop
              else f"gain per label {worst:.2e} >= {min_gain_per_label:g} within the last {patience} measured rounds")
    return Verdict("diminishing_returns", bool(stop), reason, evidence)


def stabilizing_predictions(stop_set_predictions: Sequence[np.ndarray], *, labels: Sequence[int] | None = None,
                            kappa_threshold: float = 0.99, patience: int = 3) -> Verdict:
    """Stop when successive models, each trained on more labels, agree on the stop set.

    Parameters
    ----------
    stop_set_predictions : sequence of ndarray of shape (n_stop,)
        Each round's predicted classes on the same stop set, oldest first.
    labels : sequence of int, optional
        The training labels of each of those models.  A model is compared with the one just
        before it only where it was trained on more labels; a round that added none (its batch
        skipped or not yet labeled) is skipped, as :func:`diminishing_returns` skips it.  None:
        every successive pair is compared.
    kappa_threshold : float
        The paper uses 0.99.
    patience : int
        How many of those kappas, the latest ones (the paper's window is 3), must all reach the
        threshold (>=).

    Notes
    -----
    Bloodgood and Vijay-Shanker (2009) compare the models of successive active-learning
    iterations, each trained on the labels of one more batch: two models trained on the same
    labels agree by construction, which is no sign that more labels stopped changing the model.
    O(n_stop) per pair.
    """
    patience = check_int("patience", patience, 1)
    n = len(stop_set_predictions)
    if labels is not None and len(labels) != n:
        raise ConfigError(f"Expected one training-label count per stop-set prediction ({n}). Got {len(labels)}.")
    pairs = [i for i in range(1, n) if labels is None or int(labels[i]) > int(labels[i - 1])]
    kappas = [cohen_kappa(stop_set_predictions[i - 1], stop_set_predictions[i]) for i in pairs]
    recent = kappas[-patience:]
    evidence = {"kappas": recent, "threshold": kappa_threshold, "window": patience,
                "pairs_without_new_labels": max(n - 1, 0) - len(pairs)}
    if len(recent) < patience:
        return Verdict("stabilizing_predictions", False, f"{len(recent)} of {patience} comparisons of a model with one trained on "
                       "fewer labels so far", evidence)
    stop = all(k >= kappa_threshold for k in recent)
    reason = (f"kappa >= {kappa_threshold} for the last {patience} model pairs (min {min(recent):.4f})" if stop
              else f"kappa {min(recent):.4f} < {kappa_threshold} within the last {patience} model pairs")
    return Verdict("stabilizing_predictions", bool(stop), reason, evidence)


def budget_spent(history: Sequence[dict], *, budget: int | None = None) -> Verdict:
    """Stop when the training labels reach ``budget``.

    Ids sent for labeling and not answered yet are not labels, and do not count here: the rule
    says stop once the labels in hand reach the budget.  A round counts them when it cuts its
    batch to what the budget leaves (``alscale.loop.rounds``), so no round asks for more.
    """
    if budget is None or not history:
        return Verdict("budget", False, "No budget set." if budget is None else "No rounds yet.", {"budget": budget})
    used = int(history[-1]["labels"])
    stop = used >= budget
    reason = f"{used} labels used of a budget of {budget}"
    return Verdict("budget", bool(stop), reason, {"labels": used, "budget": budget})


def check_stopping(history: Sequence[dict], stop_set_predictions: Sequence[np.ndarray] = (), *, metric: str = "accuracy",
                   target: float | None = None, patience: int = 3, min_gain_per_label: float = 1e-4,
                   kappa_threshold: float = 0.99, budget: int | None = None, prediction_labels: Sequence[int] | None = None) -> dict:
    """Run every rule.

    Parameters
    ----------
    history : sequence of dict
        One entry per round, oldest first: ``labels`` (training labels) and ``metrics``
        (:func:`alscale.loop.metrics.evaluate`).
    stop_set_predictions : sequence of ndarray of shape (n_stop,)
        Each round's predicted classes on the stop set, oldest first.
    metric : {"accuracy", "macro_f1", "log_loss", "ece"}
        What the target and diminishing-returns rules watch.
    target : float, optional
        Stop once ``metric`` reaches it; None: the rule never stops.
    patience : int, default 3
        Rounds (gains) and model pairs (kappas) the two windowed rules look at.
    min_gain_per_label : float, default 1e-4
    kappa_threshold : float, default 0.99
    budget : int, optional
        Stop once this many labels are used; None: the rule never stops.
    prediction_labels : sequence of int, optional
        The training labels of the model behind each of ``stop_set_predictions``: only a model
        trained on more labels than the one before it is compared with it
        (:func:`stabilizing_predictions`).  None: every successive pair.

    Returns
    -------
    dict
        ``{"stop": bool, "rules": [Verdict.to_dict(), ...], "reasons": [reasons of stopping rules]}``.

    Raises
    ------
    ConfigError
        An unknown ``metric``, ``patience`` < 1, or not one ``prediction_labels`` per prediction.
    """
    verdicts = [
        target_reached(history, metric=metric, target=target),
        diminishing_returns(history, metric=metric, patience=patience, min_gain_per_label=min_gain_per_label),
        stabilizing_predictions(list(stop_set_predictions), labels=prediction_labels, kappa_threshold=kappa_threshold,
                                patience=patience),
        budget_spent(history, budget=budget),
    ]
    return {
        "stop": any(v.stop for v in verdicts),
        "rules": [v.to_dict() for v in verdicts],
        "reasons": [f"{v.rule}: {v.reason}" for v in verdicts if v.stop],
    }
