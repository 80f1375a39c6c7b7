"""Matplotlib plots (Agg backend, files only): learning curves and composition over rounds."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Sequence

import numpy as np

from alscale.loop._io import atomic_write_bytes

__all__ = ["plot_composition", "plot_learning_curves"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> pathlib.Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_learning_curves(curves: dict[str, np.ndarray], labels: dict[str, np.ndarray], path, *, metric: str = "accuracy",
                         full_metric: float | None = None, title: str = "") -> pathlib.Path:
    """One line per strategy (mean over seeds) with a min-max band over seeds.

    Parameters
    ----------
    curves : dict of str -> ndarray of shape (n_seeds, n_rounds)
    labels : dict of str -> ndarray of shape (n_rounds,)
        Training labels at each round.
    path : str or path
        PNG to write (atomically).
    full_metric : float, optional
        The metric of a model trained on every candidate, drawn as a dashed line.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in sorted(curves, key=lambda s: (s != "random", s)):
        values, x = np.asarray(curves[name], dtype=float), np.asarray(labels[name])
        mean = values.mean(axis=0)
        (line,) = ax.plot(x, mean, marker="o", ms=3, label=f"{name} (n={values.shape[0]})",
                          linestyle="--" if name == "random" else "-")
        ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.18, linewidth=0)
    if full_metric is not None:
        ax.axhline(full_metric, color="gray", linestyle=":", linewidth=1, label=f"all labels ({full_metric:.3f})")
    ax.set_xlabel("labeled examples")
    ax.set_ylabel(f"{metric} (evaluation set)")
    ax.set_title(title or "Learning curves: mean over seeds, band = min-max")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8)  # beside the axes: never over a curve
    return _save(fig, path)


def plot_composition(history: Sequence[dict], path) -> pathlib.Path:
    """Jensen-Shannon divergence of classes and group columns over the rounds."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    rounds = [h for h in history if h.get("composition")]
    x = [h["labels"] for h in rounds]

    def value(v):  # a round with nothing to compare (no labeled evaluation rows) is a gap, not a 0
        return np.nan if v is None else v

    ax.plot(x, [value(h["composition"]["classes_jsd"]) for h in rounds], marker="o", label="classes vs evaluation set")
    groups = sorted({g for h in rounds for g in h["composition"].get("groups_jsd", {})})
    for g in groups:
        ax.plot(x, [value(h["composition"]["groups_jsd"].get(g)) for h in rounds], marker="s", label=f"{g} vs pool")
    ax.set_xlabel("labeled examples")
    ax.set_ylabel("Jensen-Shannon divergence (bits)")
    ax.set_title("Labeled-set composition over rounds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
