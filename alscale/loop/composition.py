"""Labeled-set composition: does the labeled set still look like the population?

Active learning picks the examples the model finds hard, so the labeled set drifts from the
pool: some classes, sources or sites pile up, others vanish.  After every round this module
compares

* the class distribution of the training labels with the evaluation set's (a uniform sample of
  the pool, so an unbiased estimate of the population), and
* each declared group column (source, language, site, ...) of the labeled rows with the pool's,

as a Jensen-Shannon divergence (base 2, in [0, 1]) plus the values most over- and
under-represented (difference of shares), and warns past a threshold, once the divergence is
also larger than chance gives at that sample size: 30 labels drawn uniformly from 10 balanced
classes are 0.05 bits or more from them more often than not, so a small labeled set is compared
with the 95th percentile of the divergence between random samples of its size and the reference's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from alscale.exceptions import ConfigError

__all__ = ["chance_js_divergence", "compare_distributions", "composition_report", "js_divergence"]


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


def _js_divergence_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """:func:`js_divergence` of each row pair of two (b, k) arrays of shares (rows summing to 1)."""
    m = 0.5 * (p + q)

    def _kl(a):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)), 0.0)
        return terms.sum(axis=1)

    return np.maximum(0.0, 0.5 * _kl(p) + 0.5 * _kl(q))


#: Above this many distinct values a column is not tested against chance (:func:`chance_js_divergence`).
MAX_VALUES_TESTED = 200_000


def chance_js_divergence(shares: npt.ArrayLike, n_sample: int, n_reference: int, *, quantile: float = 0.95,
                         draws: int = 2000, seed: int = 0) -> float:
    """The divergence two random samples of one distribution reach by chance (a Monte Carlo quantile).

    Parameters
    ----------
    shares : array-like of shape (k,)
        The distribution both samples are drawn from (the pooled shares of the two sides).
    n_sample, n_reference : int
        The two sample sizes (the labeled set's and the reference's).
    quantile : float
        Which quantile of the divergences to return.
    draws : int
        Pairs of samples drawn; fewer for many values, so that the draws of one side hold at
        most 4M shares (at least 20 draws).
    seed : int
        The draws' seed: the same inputs give the same answer.

    Returns
    -------
    float
        In bits; 0 when either sample is empty or there is only one value; 1 (the largest
        divergence: no warning) for more than ``MAX_VALUES_TESTED`` values, where draws would
        not fit in memory and random samples are far apart anyway.
    """
    pooled = np.asarray(shares, dtype=np.float64)
    if n_sample <= 0 or n_reference <= 0 or np.count_nonzero(pooled) < 2:
        return 0.0
    pooled = pooled[pooled > 0]  # a value neither side holds adds nothing to a divergence
    if len(pooled) > MAX_VALUES_TESTED:
        return 1.0
    pooled = pooled / pooled.sum()
    draws = max(20, min(draws, 4_000_000 // len(pooled)))
    rng = np.random.default_rng(seed)
    a = rng.multinomial(n_sample, pooled, size=draws) / n_sample
    b = rng.multinomial(n_reference, pooled, size=draws) / n_reference
    return float(np.quantile(_js_divergence_rows(a, b), quantile))


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
        Warn when the JS divergence exceeds it, and exceeds what random samples of these sizes
        reach 1 time in 20 (:func:`chance_js_divergence`).
    top : int
        How many over- and under-represented values to report.
    name : str
        What the values are ("class", or a group column name).

    Returns
    -------
    dict
        name, js_divergence (None when either side is empty), chance_js_divergence (the 95th
        percentile by chance; None with js_divergence), n_sample, n_reference, shares {value: {"labeled", "population"}},
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
    # the divergence random samples of these sizes reach 1 time in 20: a smaller one is no evidence of a skew
    pooled = (ps * len(sample) + pr * len(reference)) / max(len(sample) + len(reference), 1)
    chance = chance_js_divergence(pooled, len(sample), len(reference)) if jsd is not None else None
    warn = jsd is not None and bool(jsd > threshold) and bool(jsd > chance)
    message = ""
    if warn:
        parts = []
        if over:
            parts.append(f"over: {over[0]['value']} {over[0]['labeled']:.0%} vs {over[0]['population']:.0%}")
        if under:
            parts.append(f"under: {under[0]['value']} {under[0]['labeled']:.0%} vs {under[0]['population']:.0%}")
        message = f"{name} JSD {jsd:.3f} > {threshold} ({'; '.join(parts)}; chance gives up to {chance:.3f} for {len(sample):,} rows)"
    return {
        "name": name, "js_divergence": jsd, "chance_js_divergence": chance, "n_sample": len(sample), "n_reference": len(reference),
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
