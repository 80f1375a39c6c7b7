"""Replay the loop on a labeled pool: learning curves per strategy, labels saved against random.

The pool's label column is the oracle.  An evaluation set is reserved once (a uniform random
sample, shared by every run); for each seed a random initial set is drawn (shared by every
strategy of that seed, so the comparison is paired), then each strategy runs rounds of train ->
export ONNX -> evaluate -> select with :func:`alscale.select` (Ray actors, ONNX inference: the
same engine as production) until the budget is spent.  Ray is started once for the whole
simulation and reused by every selection.

Outputs in ``out``::

    curves.csv, curves.json   one row per (strategy, seed, round): labels and every metric
    summary.json              full-data metric, area under the learning curve, labels needed
    learning_curve.png        mean over seeds with a min-max band
    table.md                  labels needed to reach fractions of the full-data metric, and the
                              saving against random
    runs/<strategy>/seed<N>/<round>/   each round's model.onnx, exclude.parquet, batch/
    full_model.onnx           the model trained on every non-evaluation row

Every argument, the output folder and the pool are checked before anything is written, so a
refused simulation leaves ``out`` as it was.  A simulation that fails or is interrupted
(Ctrl-C) removes what it wrote (and the folders it created), so the same call runs again.  An
``out`` that holds an earlier simulation's results (any of the files above, or the ``runs/``
of a run that was killed before it could clean up) is refused unless ``force``; ``force``
replaces those results and leaves every other file in ``out`` (a pool kept there, as
``alscale simulate --dataset digits`` writes it) as it is.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import numbers
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from alscale._atomic import creation_problem
from alscale.config import check_int
from alscale.exceptions import ConfigError, OutputError, PoolSchemaError
from alscale.loop import _pool
from alscale.loop._io import atomic_write_bytes, atomic_write_json
from alscale.loop.evalset import EVAL_STREAM, reserve_random, resolve_size
from alscale.loop.metrics import METRICS, evaluate
from alscale.loop.plots import plot_learning_curves
from alscale.loop.seedset import seed_random
from alscale.loop.stopping import HIGHER_IS_BETTER
from alscale.loop.train import TRAINERS, export_model, predict_onnx, train_model

__all__ = ["area_under_curve", "digits_pool", "labels_needed", "simulate"]

logger = logging.getLogger(__name__)

#: What a simulation writes in its output folder (``force`` replaces these, and nothing else).
_OUTPUT_FILES = ("curves.csv", "curves.json", "summary.json", "learning_curve.png", "table.md", "full_model.onnx")
_RUNS_DIR = "runs"


def area_under_curve(labels: np.ndarray, values: np.ndarray) -> float:
    """Normalised area under a learning curve: the trapezoid area divided by the label range.

    Parameters
    ----------
    labels : ndarray of shape (r,)
    values : ndarray of shape (r,)

    Returns
    -------
    float
        The curve's mean height over ``[labels[0], labels[-1]]`` (the value itself for r = 1).
    """
    x, y = np.asarray(labels, dtype=float), np.asarray(values, dtype=float)
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))


def labels_needed(labels: np.ndarray, values: np.ndarray, goal: float, *, higher_is_better: bool = True) -> int | None:
    """The fewest labels at which the curve reaches ``goal`` (None if it never does)."""
    values = np.asarray(values, dtype=float)
    hit = values >= goal if higher_is_better else values <= goal
    idx = np.flatnonzero(hit)
    return int(np.asarray(labels)[idx[0]]) if len(idx) else None


def simulate(pool, *, out, label_column: str = "label", strategies: Sequence[str] = ("random", "margin", "entropy"),
             seeds: Sequence[int] = (0, 1, 2), initial_size: int = 20, batch_size: int = 20, budget: int = 200,
             eval_size=0.25, eval_seed: int = 0, trainer: str = "logistic", metric: str = "accuracy",
             fractions: Sequence[float] = (0.9, 0.95, 0.98), id_column: str = "id", features: Sequence[str] | None = None,
             actors: int | None = None, address: str | None = None, force: bool = False, progress: bool = False) -> dict:
    """Simulate active learning with an oracle label column.

    Parameters
    ----------
    pool : str or path or list
        A labeled Parquet pool.
    out : str or path
        Output folder (created when missing).  One that holds an earlier simulation's results
        is refused unless ``force``.
    label_column : str
        The oracle labels.
    strategies : str or sequence of str, default ("random", "margin", "entropy")
        Registered strategy names for one model (not ``qbc-*``); "random" is always added.  A
        string is split on commas, as ``--strategies`` is: "margin,entropy" is two names.
    seeds : int or sequence of int, default (0, 1, 2)
        One run per strategy and seed; the initial set and every selection depend on it.
    initial_size, batch_size, budget : int, default 20, 20, 200
        Random initial labels, labels per round, and total labels (initial included).
    eval_size : int or float, default 0.25
        Evaluation-set rows (an int), or a fraction of the pool (a float in (0, 1)); a float of
        1 or more is refused: pass an int for a count.
    eval_seed : int, default 0
        Seed of the evaluation set (the same for every strategy and seed).
    trainer : {"logistic", "mlp"}
    metric : {"accuracy", "macro_f1", "log_loss", "ece"}
        The metric of the table and plot.
    fractions : float or sequence of float
        Fractions of the full-data metric for the labels-needed table (numbers > 0).
    id_column : str, default "id"
    features : str or sequence of str, optional
        Feature column(s); by default the one obvious feature column.
    actors : int, optional
        Ray actors per selection.
    address : str, optional
        A Ray cluster to use; by default a local Ray is started once for the whole run.
    force : bool, default False
        Replace an earlier simulation's results in ``out`` (its ``runs/`` and the output files
        listed in the module docstring); other files there are kept.
    progress : bool, default False
        Show a progress bar on stderr: one step per strategy and seed, each a loop of rounds.

    Returns
    -------
    dict
        The summary (also ``summary.json``): full_metric, per-strategy AULC and labels
        needed, the table as markdown, and the output paths.

    Raises
    ------
    ConfigError, StrategyError
        An argument of the wrong type or out of range, or an unknown (or committee) strategy,
        trainer or metric.
    OutputError
        ``out`` holds an earlier simulation's results and ``force`` is False, or it cannot be
        an output folder.
    PoolError
        The pool cannot be read, lacks a column, has a row without an oracle label, or is too
        small for the evaluation set plus the budget.

    Every one of these is raised before anything is written: a refused simulation leaves
    ``out`` as it was (or absent).  An error or KeyboardInterrupt during the run is raised
    after what the run wrote in ``out`` (and the folders it created) is removed.
    """
    t_start = time.perf_counter()
    plan = _prepare(pool, out=out, label_column=label_column, strategies=strategies, seeds=seeds, initial_size=initial_size,
                    batch_size=batch_size, budget=budget, eval_size=eval_size, eval_seed=eval_seed, trainer=trainer,
                    metric=metric, fractions=fractions, id_column=id_column, features=features, actors=actors,
                    address=address, force=force)
    out = plan.out
    made = [folder for folder in (out.absolute(), *out.absolute().parents) if not folder.exists()]  # deepest first
    out.mkdir(parents=True, exist_ok=True)
    _remove_earlier_outputs(out)  # only with force (else there are none): rounds of an earlier run must not be reused as this one's
    try:
        summary = _simulate(pool, plan, trainer=trainer, metric=metric, label_column=label_column, id_column=id_column,
                            address=address, progress=progress, t_start=t_start)
    except BaseException:  # an error or Ctrl-C: what this run wrote goes, so the same command runs again
        _remove_earlier_outputs(out)
        for folder in made:  # the folders this run created, if nothing else was put there meanwhile
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return summary


def _simulate(pool, plan: _Plan, *, trainer, metric, label_column, id_column, address, progress, t_start) -> dict:
    """The simulation itself, into ``plan.out`` (checked, emptied of earlier results); returns the summary."""
    out, ids, X_all, y_all, classes = plan.out, plan.ids, plan.X_all, plan.y_all, plan.classes
    eval_rows, is_eval = plan.eval_rows, plan.is_eval
    candidates = ids[~is_eval]

    full = train_model(X_all[~is_eval], y_all[~is_eval], classes, trainer=trainer, seed=0)
    full_path = export_model(full, out / "full_model.onnx")
    full_metrics = evaluate(y_all[eval_rows], predict_onnx(full_path, X_all[eval_rows])[0], classes)

    rows: list[dict] = []
    from alscale.engine.runtime import ray_session  # Ray itself is the engine's business

    bar = _progress_bar(len(plan.seeds) * len(plan.strategies), progress)
    with ray_session(address, num_cpus=plan.actors), (bar if bar is not None else contextlib.nullcontext()):  # closed on an error too
        for seed in plan.seeds:
            initial = seed_random(candidates, plan.initial_size, seed=seed)
            for strategy in plan.strategies:
                if bar is not None:
                    bar.set_postfix_str(f"{strategy}, seed {seed}")
                rows += _run_one(pool, X_all, y_all, plan.row_of, classes, initial, plan.eval_ids, eval_rows, strategy=strategy,
                                 seed=seed, batch_size=plan.batch_size, budget=plan.budget, trainer=trainer, id_kind=plan.id_kind,
                                 id_column=id_column, feats=plan.feats, actors=plan.actors,
                                 run_dir=out / _RUNS_DIR / strategy / f"seed{seed}")
                logger.info("simulated %s seed %d: %d rounds", strategy, seed, sum(1 for r in rows if r["strategy"] == strategy and r["seed"] == seed))
                if bar is not None:
                    bar.update()

    summary = _summarise(rows, plan.strategies, plan.seeds, full_metrics, metric, plan.fractions)
    summary.update({
        "config": {"pool": str(pool), "label_column": label_column, "strategies": plan.strategies, "seeds": plan.seeds,
                   "initial_size": plan.initial_size, "batch_size": plan.batch_size, "budget": plan.budget, "eval_size": plan.n_eval,
                   "trainer": trainer, "metric": metric, "pool_rows": int(len(ids)), "classes": classes},
        "wall_seconds": round(time.perf_counter() - t_start, 2),
    })
    _write_outputs(out, rows, summary, metric)
    return summary


def _split_names(text: str) -> list[str]:
    """Strategy names of a comma-separated string, as ``--strategies`` and ``strategies=`` take them.

    ``"margin, entropy"`` -> ``["margin", "entropy"]``; empty items are dropped.
    """
    return [name.strip() for name in text.split(",") if name.strip()]


def check_simulation(pool, **kwargs) -> None:
    """Check a simulation's arguments, output folder and pool as :func:`simulate` does, writing nothing.

    For a caller that must write something before the simulation (``alscale simulate
    --dataset digits`` writes the pool into the output folder) and should not when the
    simulation would be refused.

    Parameters
    ----------
    pool : str or path or list
    **kwargs
        :func:`simulate`'s keyword arguments.

    Raises
    ------
    ConfigError, StrategyError, OutputError, PoolError
        What :func:`simulate` would raise before it writes anything.
    """
    _prepare(pool, **kwargs)


@dataclass(frozen=True)
class _Plan:
    """A simulation's checked arguments and its pool, read: everything :func:`simulate` needs before it writes."""

    out: pathlib.Path
    strategies: list
    seeds: list
    fractions: list
    initial_size: int
    batch_size: int
    budget: int
    actors: int | None
    feats: list
    id_kind: str
    ids: np.ndarray
    classes: list
    y_all: np.ndarray
    X_all: np.ndarray
    row_of: dict
    n_eval: int
    eval_ids: np.ndarray
    eval_rows: np.ndarray
    is_eval: np.ndarray


def _prepare(pool, *, out, label_column: str = "label", strategies: Sequence[str] = ("random", "margin", "entropy"),
             seeds: Sequence[int] = (0, 1, 2), initial_size: int = 20, batch_size: int = 20, budget: int = 200,
             eval_size=0.25, eval_seed: int = 0, trainer: str = "logistic", metric: str = "accuracy",
             fractions: Sequence[float] = (0.9, 0.95, 0.98), id_column: str = "id", features: Sequence[str] | None = None,
             actors: int | None = None, address: str | None = None, force: bool = False) -> _Plan:
    """Every check of :func:`simulate` (arguments, then ``out``, then the pool), and the pool read; nothing written."""
    from alscale.config import check_path
    from alscale.loop.settings import check_loop_strategy
    from alscale.pool.features import detect_features

    # strategies as --strategies takes them: a list, or one comma-separated string ("margin,entropy")
    strategies = _split_names(strategies) if isinstance(strategies, str) else strategies
    # one feature column name where a list is expected is one name, as select's repeatable settings take it
    features = [features] if isinstance(features, str) else features
    # one seed or one fraction is a list of one; a string is neither (it would be read letter by letter)
    seeds = [seeds] if isinstance(seeds, numbers.Integral) else seeds
    fractions = [fractions] if isinstance(fractions, numbers.Real) and not isinstance(fractions, bool) else fractions
    for name, what in (("seeds", "an int or a list of ints"), ("fractions", "a number or a list of numbers")):
        value = {"seeds": seeds, "fractions": fractions}[name]
        if isinstance(value, (str, bytes)):
            raise ConfigError(f"The {name!r} parameter must be {what}. Got the string {value!r} instead.")
    for name, value in (("strategies", strategies), ("seeds", seeds), ("fractions", fractions), ("features", features)):
        if not isinstance(value, Iterable) and not (value is None and name == "features"):
            raise ConfigError(f"The {name!r} parameter must be a list. Got {value!r} instead.")
    strategies = list(dict.fromkeys(["random", *strategies]))
    for name in strategies:
        check_loop_strategy(name)
    seeds = list(seeds)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"The 'seeds' parameter must hold ints >= 0. Got {seeds!r} instead.")
    seeds = [int(s) for s in seeds]  # numpy integers kept as int
    if not seeds:
        raise ConfigError("The 'seeds' parameter must list at least one seed. Got none.")
    if len(set(seeds)) != len(seeds):  # a repeated seed is the same run twice: its curve would count twice
        raise ConfigError(f"The 'seeds' parameter must not repeat a seed (each seed is one run of every strategy). Got {seeds}.")
    fractions = list(fractions)
    if not all(isinstance(f, numbers.Real) and not isinstance(f, bool) and math.isfinite(f) and f > 0 for f in fractions):
        raise ConfigError(f"The 'fractions' parameter must hold numbers > 0 (of the full-data metric). Got {fractions}.")
    fractions = [float(f) for f in fractions]
    initial_size = check_int("initial_size", initial_size, 2)
    batch_size = check_int("batch_size", batch_size, 1)
    budget = check_int("budget", budget, initial_size)
    eval_seed = check_int("eval_seed", eval_seed, 0)
    if actors is not None:
        actors = check_int("actors", actors, 1)
    if metric not in METRICS:
        raise ConfigError(f"The metric must be one of {list(METRICS)}. Got {metric!r} instead.")
    if trainer not in TRAINERS:
        raise ConfigError(f"The trainer must be one of {list(TRAINERS)}. Got {trainer!r} instead.")
    for name, value in (("label_column", label_column), ("id_column", id_column), *(("features", f) for f in features or ())):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"The {name!r} parameter must be a column name. Got {value!r} instead.")
    if address is not None and not isinstance(address, str):
        raise ConfigError(f"The 'address' parameter must be a string. Got {address!r} instead.")
    if not isinstance(force, bool):
        raise ConfigError(f"The 'force' parameter must be true or false. Got {force!r} instead.")
    _pool.check_pool_spec(pool)
    out = pathlib.Path(check_path("out", out))
    _check_output_folder(out, force)

    dataset = _pool.pool_dataset(pool)
    feats = list(features) if features else _pool.feature_columns(dataset.schema, id_column=id_column, exclude=[label_column])
    detect_features(dataset.schema, id_column, feats)  # select's rule for usable feature columns, and its one-line errors
    table = _pool.read_columns(pool, [label_column, *feats], id_column=id_column)
    id_kind = "int64" if pa.types.is_integer(table.schema.field(id_column).type) else "string"
    ids = _pool.as_ids(table.column(id_column), id_kind)
    raw_labels = table.column(label_column).to_pylist()
    if any(v is None for v in raw_labels):
        raise PoolSchemaError(f"Expected an oracle label for every row in column {label_column!r}. Got {sum(v is None for v in raw_labels)} nulls.")
    classes = sorted(set(raw_labels), key=lambda v: (str(type(v)), v))
    class_index = {c: i for i, c in enumerate(classes)}
    y_all = np.array([class_index[v] for v in raw_labels], dtype=np.int64)
    X_all = _pool.features_from_table(table, feats)
    row_of = {v: i for i, v in enumerate(ids.tolist())}

    n_eval = resolve_size(eval_size, len(ids), name="eval_size")
    if n_eval < 1:
        raise ConfigError(f"The 'eval_size' setting must give an evaluation set of at least 1 row. Got {eval_size!r}.")
    if n_eval + budget > len(ids):
        raise ConfigError(f"The evaluation set ({n_eval}) plus the budget ({budget}) must fit in the pool ({len(ids)} rows).")
    eval_ids = reserve_random(ids, n_eval, seed=eval_seed, stream=EVAL_STREAM)
    eval_rows = np.array([row_of[v] for v in eval_ids.tolist()])
    is_eval = np.zeros(len(ids), dtype=bool)
    is_eval[eval_rows] = True
    return _Plan(out=out, strategies=strategies, seeds=seeds, fractions=fractions, initial_size=initial_size, batch_size=batch_size,
                 budget=budget, actors=actors, feats=feats, id_kind=id_kind, ids=ids, classes=classes, y_all=y_all, X_all=X_all,
                 row_of=row_of, n_eval=n_eval, eval_ids=eval_ids, eval_rows=eval_rows, is_eval=is_eval)


def _earlier_outputs(out: pathlib.Path) -> list[str]:
    """The names of an earlier simulation's outputs in ``out`` (``runs/`` first)."""
    names = [f"{_RUNS_DIR}/"] if (out / _RUNS_DIR).exists() else []
    return names + [name for name in _OUTPUT_FILES if (out / name).exists()]


def _check_output_folder(out: pathlib.Path, force: bool) -> None:
    """Refuse ``out`` when it cannot be the output folder, or holds earlier results without ``force``."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"Expected an output folder at {str(out)!r}. Got a file.")
    if out.is_dir():
        earlier = _earlier_outputs(out)
        if earlier and not force:
            # a failed or interrupted run removes what it wrote: files without a summary are a killed run's
            unfinished = "" if "summary.json" in earlier else ", left by a simulation that did not finish (no summary.json)"
            raise OutputError(f"Expected an output folder without an earlier simulation's results. Got {str(out)!r} holding "
                              f"{', '.join(earlier)}{unfinished}; set force (--force) to replace them.")
        runs = out / _RUNS_DIR
        if runs.exists() and not _holds_rounds(runs):  # force replaces a simulation's rounds, never other files called runs
            raise OutputError(f"Expected {str(runs)!r} to hold an earlier simulation's rounds (runs/<strategy>/seed<N>/). "
                              "Got other files there; nothing was removed.")
        return
    problem = creation_problem(out)
    if problem:
        raise OutputError(f"Expected a folder that can be created at {str(out)!r}. Got {problem}.")


def _holds_rounds(runs: pathlib.Path) -> bool:
    """Whether ``runs`` is laid out as a simulation's ``runs/<strategy>/seed<N>/`` folders."""
    return runs.is_dir() and all(strategy.is_dir() and all(seed.is_dir() and re.fullmatch(r"seed\d+", seed.name) for seed in strategy.iterdir())
                                 for strategy in runs.iterdir())


def _remove_earlier_outputs(out: pathlib.Path) -> None:
    """Remove an earlier simulation's results from ``out`` (checked by :func:`_check_output_folder`); other files stay."""
    shutil.rmtree(out / _RUNS_DIR, ignore_errors=True)
    for name in _OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)


def _run_one(pool, X_all, y_all, row_of, classes, initial, eval_ids, eval_rows, *, strategy, seed, batch_size, budget,
             trainer, id_kind, id_column, feats, actors, run_dir) -> list[dict]:
    from alscale.loop.rounds import select_batch

    labeled = list(initial.tolist())
    out_rows = []
    round_no = 0
    while True:
        rdir = run_dir / f"{round_no:03d}"
        rows = np.array([row_of[v] for v in labeled])
        est = train_model(X_all[rows], y_all[rows], classes, trainer=trainer, seed=seed)
        model_path = export_model(est, rdir / "model.onnx")
        m = evaluate(y_all[eval_rows], predict_onnx(model_path, X_all[eval_rows])[0], classes)
        out_rows.append({"strategy": strategy, "seed": seed, "round": round_no, "labels": len(labeled),
                         **{k: m[k] for k in METRICS}})
        if len(labeled) >= budget:
            break
        k = min(batch_size, budget - len(labeled))
        exclude = np.concatenate([np.asarray(labeled, dtype=object if id_kind != "int64" else np.int64), eval_ids])
        manifest = select_batch(pool, model_path, out_dir=rdir, exclude_ids=exclude, id_type=id_kind, strategy=strategy,
                                k=k, seed=seed * 1000 + round_no, id_column=id_column, features=feats, actors=actors,
                                labeled_ids=np.asarray(labeled))
        picked = _pool.as_ids(manifest.batch.column("id"), id_kind).tolist()
        if not picked:
            break
        labeled += picked
        round_no += 1
    return out_rows


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="run", file=sys.stderr, desc="simulating", dynamic_ncols=True, leave=True)


def _goal(fraction: float, full: float, higher_is_better: bool) -> float:
    """The metric value that counts as ``fraction`` of the full-data one (for a loss: the full loss over it)."""
    return fraction * full if higher_is_better else full / fraction


def _summarise(rows, strategies, seeds, full_metrics, metric, fractions) -> dict:
    hib = HIGHER_IS_BETTER[metric]
    full = float(full_metrics[metric])
    curves, xs, aulc = {}, {}, {}
    for s in strategies:
        per_seed = [[r for r in rows if r["strategy"] == s and r["seed"] == seed] for seed in seeds]
        n_rounds = min(len(p) for p in per_seed)
        curves[s] = np.array([[r[metric] for r in p[:n_rounds]] for p in per_seed])
        xs[s] = np.array([r["labels"] for r in per_seed[0][:n_rounds]])
        per = [area_under_curve(xs[s], c) for c in curves[s]]
        aulc[s] = {"mean": float(np.mean(per)), "std": float(np.std(per)), "per_seed": per}
    needed = {}
    for f in fractions:
        goal = _goal(f, full, hib)
        needed[str(f)] = {s: labels_needed(xs[s], curves[s].mean(axis=0), goal, higher_is_better=hib) for s in strategies}
    return {
        "metric": metric, "full_metric": full, "full_metrics": full_metrics,
        "aulc": aulc, "labels_needed": needed,
        "mean_curves": {s: {"labels": xs[s].tolist(), "mean": curves[s].mean(axis=0).tolist(),
                            "min": curves[s].min(axis=0).tolist(), "max": curves[s].max(axis=0).tolist()} for s in strategies},
        "table_markdown": _table(needed, aulc, strategies, full, metric, fractions, max(int(x[-1]) for x in xs.values())),
        "_curves": curves, "_labels": xs,
    }


def _table(needed, aulc, strategies, full, metric, fractions, budget) -> str:
    hib = HIGHER_IS_BETTER[metric]
    bound = "" if hib else f"{metric} <= "  # for a loss, 90% of full is the full loss over 0.9
    head = ["strategy", f"AULC ({metric})"] + [f"labels to {f:.0%} of full ({bound}{_goal(f, full, hib):.3f})" for f in fractions] + ["saving vs random"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in strategies:
        cells = [s, f"{aulc[s]['mean']:.4f} ± {aulc[s]['std']:.4f}"]
        savings = []
        for f in fractions:
            n = needed[str(f)][s]
            r = needed[str(f)]["random"]
            cells.append("—" if n is None else str(n))
            if s != "random" and n is not None:
                savings.append(f"{1 - n / r:+.0%}" if r is not None else f">{1 - n / budget:.0%}")
            elif s != "random":
                savings.append("—")
        cells.append("(baseline)" if s == "random" else " / ".join(savings))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_outputs(out: pathlib.Path, rows: list[dict], summary: dict, metric: str) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["strategy", "seed", "round", "labels", *METRICS])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "curves.csv", buf.getvalue().encode())
    atomic_write_json(out / "curves.json", rows)
    curves, labels = summary.pop("_curves"), summary.pop("_labels")
    png = plot_learning_curves(curves, labels, out / "learning_curve.png", metric=metric, full_metric=summary["full_metric"])
    atomic_write_bytes(out / "table.md", summary["table_markdown"].encode())
    summary["outputs"] = {"curves_csv": str(out / "curves.csv"), "curves_json": str(out / "curves.json"),
                          "plot": str(png), "table": str(out / "table.md"), "summary": str(out / "summary.json")}
    atomic_write_json(out / "summary.json", summary)


def digits_pool(path) -> pathlib.Path:
    """Write scikit-learn's bundled digits (1797 rows, 64 features, 10 classes) as a labeled pool.

    The pool of ``alscale simulate --dataset digits``.

    Parameters
    ----------
    path : str or path
        The Parquet file to write (atomically).

    Returns
    -------
    pathlib.Path
        ``path``, with columns ``id`` int64, ``features`` fixed_size_list<float32>[64],
        ``label`` int64.
    """
    from sklearn.datasets import load_digits

    from alscale.loop._io import atomic_write_parquet

    d = load_digits()
    X = d.data.astype(np.float32)
    table = pa.table({
        "id": pa.array(np.arange(len(X), dtype=np.int64)),
        "features": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1]),
        "label": pa.array(d.target.astype(np.int64)),
    })
    return atomic_write_parquet(path, table)
