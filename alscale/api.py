"""The Python API: ``alscale.select`` and friends, thin verbs over the engine."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from alscale.config import make_settings
from alscale.manifest import Manifest

__all__ = ["select"]


def select(
    pool: str | os.PathLike | None = None,
    model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    strategy: str | None = None,
    k: int | None = None,
    out: str | os.PathLike | None = None,
    exclude: str | os.PathLike | Sequence[str | os.PathLike] = (),
    labeled: str | os.PathLike | Sequence[str | os.PathLike] = (),
    actors: int | None = None,
    address: str | None = None,
    seed: int | None = None,
    batch_size: int | str | None = None,
    threads: int | None = None,
    id_column: str | None = None,
    features: str | Sequence[str] | None = None,
    probs_output: str | None = None,
    embedding_output: str | None = None,
    on_invalid: str | None = None,
    force: bool | None = None,
    progress: bool | None = None,
    strategy_params: Mapping[str, Any] | None = None,
    skip_bad_shards: bool | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    keep_checkpoints: bool | None = None,
    config: str | os.PathLike | None = None,
) -> Manifest:
    """Select the ``k`` most informative rows of a Parquet pool with an ONNX model.

    Uses the Ray already initialised in this process if there is one (and leaves it running);
    otherwise connects to ``address`` or starts a private local Ray for the call.

    Parameters
    ----------
    pool : path-like
        Parquet file, directory or glob (any filesystem pyarrow opens).
    model : path-like or sequence of path-like
        An ONNX classifier; several (or a directory) form a committee.
    strategy : str, default "entropy"
        ``entropy``, ``margin``, ``least-confidence``, ``random``, a committee strategy
        (``qbc-vote``, ``qbc-kl``) or a diversity strategy (``badge``, ``coreset``,
        ``cluster-margin``): the names of :data:`alscale.strategies.STRATEGIES`.
    k : int, default 100
    out : path-like, optional
        Write ``batch.parquet`` and ``manifest.json`` there (atomically).  Without it the batch
        is only returned.
    exclude, labeled : path-like or sequence of path-like
        Id files (Parquet/CSV/one per line) never to select; labeled ids also seed core-set.
    config : path-like, optional
        A TOML/YAML file with any of these settings; explicit arguments override it, except
        that ``exclude`` and ``labeled`` add their files to the file's, and a ``strategy``
        other than the file's leaves out the file's ``strategy_params``.
    actors, address, seed, batch_size, threads, id_column, features : optional
        As in :class:`alscale.SelectSettings`, whose defaults apply to any left as None.
    probs_output, embedding_output, on_invalid, force, progress, strategy_params : optional
        As in :class:`alscale.SelectSettings`.
    skip_bad_shards, checkpoint_dir, keep_checkpoints : optional
        As in :class:`alscale.SelectSettings`.

    Returns
    -------
    Manifest
        ``.batch`` (pyarrow.Table in rank order), ``.data`` (manifest.json), ``.path``.

    Raises
    ------
    ConfigError
        A setting of the wrong type or out of range, or a config file that cannot be used;
        raised before Ray starts.
    StrategyError
        An unknown strategy, or one whose needs the model cannot meet.
    PoolError, ModelError
        The pool or the model cannot be used (``PoolExhaustedError``: fewer rows than ``k``).
    OutputError
        ``out`` exists (without ``force``) or cannot be written.
    EngineError
        The cluster cannot be reached or failed (``ClusterError``), or a shard fails.

    Examples
    --------
    >>> m = alscale.select("pool/", "model.onnx", strategy="margin", k=500, out="batch-1")  # doctest: +SKIP
    >>> m.batch.column("id").to_pylist()[:3]  # doctest: +SKIP
    """
    from alscale.engine import run_selection

    # paths, one string or a list: SelectSettings normalizes them all the same way
    settings = make_settings(
        config,
        pool=pool,
        model=model,
        strategy=strategy,
        k=k,
        out=out,
        exclude=exclude,
        labeled=labeled,
        actors=actors,
        address=address,
        seed=seed,
        batch_size=batch_size,
        threads=threads,
        id_column=id_column,
        features=features,
        probs_output=probs_output,
        embedding_output=embedding_output,
        on_invalid=on_invalid,
        force=force,
        progress=progress,
        strategy_params=dict(strategy_params) if isinstance(strategy_params, Mapping) else strategy_params,  # else refused
        skip_bad_shards=skip_bad_shards,
        checkpoint_dir=checkpoint_dir,
        keep_checkpoints=keep_checkpoints,
    )
    return run_selection(settings)
