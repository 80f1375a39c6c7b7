"""Evaluation metrics on the held-out evaluation set.

Pure numpy: labels are class indices (n,), probabilities are (n, c).  :func:`evaluate` returns
the dict that is saved per round as ``metrics.json``.

* accuracy, macro-F1 (classes absent from both truth and prediction are left out of the mean,
  as scikit-learn does with ``labels`` restricted to the present ones),
* per-class recall,
* log loss (probabilities clipped to ``[eps, 1 - eps]`` and renormalised),
* expected calibration error (Guo et al. 2017; Naeini et al. 2015): the confidence of the
  predicted class is binned into ``n_bins`` equal-width bins over [0, 1]; ECE is the
  bin-size-weighted mean of ``|accuracy(bin) - mean confidence(bin)|``.  O(n*c).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from alscale.exceptions import ConfigError, ModelContractError

__all__ = ["METRICS", "accuracy", "cohen_kappa", "evaluate", "expected_calibration_error", "log_loss", "macro_f1", "per_class_recall"]


#: The metrics :func:`evaluate` reports, by the names settings and stopping rules use.
METRICS = ("accuracy", "macro_f1", "log_loss", "ece")

def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Fraction of matching labels; y_true, y_pred of shape (n,)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_recall(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> np.ndarray:
    """Recall of each class, shape (n_classes,); NaN for a class absent from y_true."""
    cm = _confusion(np.asarray(y_true), np.asarray(y_pred), n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def macro_f1(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in y_true or y_pred (0 where undefined)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = _confusion(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2TP + FP + FN
    present = denom > 0
    if not present.any():
        return float("nan")
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean())


def log_loss(y_true: npt.ArrayLike, probs: npt.ArrayLike, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the true class; probs of shape (n, c)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    y = np.asarray(y_true)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def expected_calibration_error(y_true: npt.ArrayLike, probs: npt.ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True class indices.
    probs : array-like of shape (n, c)
    n_bins : int
        Equal-width bins over [0, 1]; bin ``b`` holds confidences in ``(b/B, (b+1)/B]``
        (the first bin also takes 0).

    Returns
    -------
    float
        ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|``.

    Raises
    ------
    ConfigError
        ``n_bins`` is not an int >= 1, or ``probs`` is not (n, c) with one row per label.
    """
    from alscale.config import check_int

    n_bins = check_int("n_bins", n_bins, 1)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    if p.ndim != 2 or p.shape[1] < 1 or y.shape != p.shape[:1]:
        raise ConfigError(f"Expected y_true of shape (n,) and probs of shape (n, c). Got {y.shape} and {p.shape}.")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / max(len(y), 1))


def cohen_kappa(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cohen's kappa between two labelings of the same items (1 = identical, 0 = chance).

    Parameters
    ----------
    a, b : array-like of shape (n,)
        The two labelings, item by item (any comparable labels).

    Returns
    -------
    float
        In [-1, 1]; 1.0 when both labelings are identical and constant (expected agreement
        1), NaN for n = 0.

    Raises
    ------
    ConfigError
        ``a`` and ``b`` are not 1-D of one length.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ConfigError(f"Expected two labelings of the same items, of shape (n,). Got shapes {a.shape} and {b.shape}.")
    if len(a) == 0:
        return float("nan")
    values, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = inv[: len(a)], inv[len(a):]
    k = len(values)
    observed = float(np.mean(ia == ib))
    pa = np.bincount(ia, minlength=k) / len(a)
    pb = np.bincount(ib, minlength=k) / len(b)
    expected = float(pa @ pb)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def evaluate(y_true: npt.ArrayLike, probs: npt.ArrayLike, classes: Sequence, *, n_bins: int = 15) -> dict:
    """Every metric of one round on the evaluation set.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True class indices into ``classes``.
    probs : array-like of shape (n, c)
        The model's probabilities, columns in ``classes`` order.
    classes : sequence of length c
    n_bins : int, default 15
        Bins of the expected calibration error (:func:`expected_calibration_error`).

    Returns
    -------
    dict
        accuracy, macro_f1, log_loss, ece, per_class_recall {class: recall or None}, n.

    Raises
    ------
    ModelContractError
        If ``probs`` does not have one column per class or one row per label.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != len(classes) or p.shape[0] != len(y):
        raise ModelContractError(f"Expected probabilities of shape ({len(y)}, {len(classes)}). Got {p.shape}.")
    pred = p.argmax(axis=1)
    recall = per_class_recall(y, pred, len(classes))
    return {
        "n": int(len(y)),
        "accuracy": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, len(classes)),
        "log_loss": log_loss(y, p),
        "ece": expected_calibration_error(y, p, n_bins),
        "per_class_recall": {str(c): (None if np.isnan(r) else float(r)) for c, r in zip(classes, recall)},
    }
