"""Labeled-set composition: does the labeled set still look like the population?

Active learning picks the examples the model finds hard, so the labeled set drifts from the
pool: some classes, sources or sites pile up, others vanish.  After every round this module
compares

* the class distribution of the training labels with the evaluation set's (a uniform sample of
  the pool, so an unbiased estimate of the population), and
* each declared group column (source, language, site, ...) of the labeled rows with the pool's,

as a Jensen-Shannon divergence (base 2, in [0, 1]) plus the values most over- and
under-represented (difference of shares), and warns past a threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from alscale.exceptions import ConfigError

__all__ = ["compare_distributions", "composition_report", "js_divergence"]


def js_divergence(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon divergence in bits between two distributions over the same values.

    Parameters
    ----------
    p, q : array-like of shape (k,)
        Non-negative weights (normalised here).

    Returns
    -------
    float
        ``0.5*KL(p||m) + 0.5*KL(q||m)`` with ``m = (p+q)/2`` and log base 2, in [0, 1]; equals
        ``scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2``.  O(k).

    Raises
    ------
    ConfigError
        ``p`` and ``q`` are not 1-D of one length.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.ndim != 1 or p.shape != q.shape:
        raise ConfigError(f"Expected two distributions over the same values, of shape (k,). Got shapes {p.shape} and {q.shape}.")
    p = p / p.sum() if p.sum() > 0 else p
    q = q / q.sum() if q.sum() > 0 else q
    m = 0.5 * (p + q)

    def _kl(a):
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, 0.5 * _kl(p) + 0.5 * _kl(q))


def _shares(values: Sequence, support: list) -> np.ndarray:
    index = {v: i for i, v in enumerate(support)}
    counts = np.zeros(len(support), dtype=np.float64)
    for v in values:
        counts[index[v]] += 1
    return counts / counts.sum() if counts.sum() > 0 else counts


def compare_distributions(sample: Sequence, reference: Sequence, *, threshold: float = 0.05, top: int = 3,
                          name: str = "class") -> dict:
    """Compare the value distribution of ``sample`` with ``reference``.

    Parameters
    ----------
    sample : sequence of hashable, length n
        Values in the labeled set.
    reference : sequence of hashable, length m
        Values in the population (evaluation set or pool).
    threshold : float
        Warn when the JS divergence exceeds it.
    top : int
        How many over- and under-represented values to report.
    name : str
        What the values are ("class", or a group column name).

    Returns
    -------
    dict
        name, js_divergence (None when either side is empty), n_sample, n_reference,
        shares {value: {"labeled", "population"}},
        over / under [{"value", "labeled", "population", "difference"}], warn, message.

    Raises
    ------
    ConfigError
        ``sample`` or ``reference`` is not a sequence of values (a string is refused, not
        taken letter by letter).
    """
    for what, values in (("sample", sample), ("reference", reference)):
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(f"The {what!r} parameter must be a sequence of values. Got {values!r} instead.")
    sample = ["<null>" if v is None else str(v) for v in sample]
    reference = ["<null>" if v is None else str(v) for v in reference]
    support = sorted(set(sample) | set(reference))
    ps, pr = _shares(sample, support), _shares(reference, support)
    jsd = js_divergence(ps, pr) if len(sample) and len(reference) else None  # nothing to compare: not a perfect match
    diff = ps - pr
    order = np.argsort(-diff, kind="stable")
    rows = [{"value": support[i], "labeled": float(ps[i]), "population": float(pr[i]), "difference": float(diff[i])}
            for i in range(len(support))]
    over = [rows[i] for i in order[:top] if diff[i] > 0]
    under = [rows[i] for i in order[::-1][:top] if diff[i] < 0]
    warn = jsd is not None and bool(jsd > threshold)
    message = ""
    if warn:
        parts = []
        if over:
            parts.append(f"over: {over[0]['value']} {over[0]['labeled']:.0%} vs {over[0]['population']:.0%}")
        if under:
            parts.append(f"under: {under[0]['value']} {under[0]['labeled']:.0%} vs {under[0]['population']:.0%}")
        message = f"{name} JSD {jsd:.3f} > {threshold} ({'; '.join(parts)})"
    return {
        "name": name, "js_divergence": jsd, "n_sample": len(sample), "n_reference": len(reference),
        "shares": {r["value"]: {"labeled": r["labeled"], "population": r["population"]} for r in rows},
        "over": over, "under": under, "warn": warn, "message": message,
    }


def composition_report(labels: Sequence, eval_labels: Sequence, groups: dict[str, tuple[Sequence, Sequence]] | None = None,
                       *, threshold: float = 0.05) -> dict:
    """Class and group composition of the labeled set against the population.

    Parameters
    ----------
    labels : sequence
        Class labels of the training set.
    eval_labels : sequence
        Class labels of the evaluation set.
    groups : dict, optional
        ``{column: (labeled_values, pool_values)}``.
    threshold : float

    Returns
    -------
    dict
        ``{"classes": compare_distributions(...), "groups": {column: ...}, "warnings": [str]}``.
    """
    report = {"classes": compare_distributions(labels, eval_labels, threshold=threshold, name="class"), "groups": {}}
    for column, (lab, pool) in (groups or {}).items():
        report["groups"][column] = compare_distributions(lab, pool, threshold=threshold, name=column)
    report["warnings"] = [r["message"] for r in [report["classes"], *report["groups"].values()] if r["warn"]]
    return report
