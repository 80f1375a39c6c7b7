"""The strategy registry: every ``--strategy`` value and what it needs.

A *top-K* strategy maps a :class:`ScoringBatch` to scores (n,), higher = more informative,
and the reduce stage keeps the exact top K.  A *diversity* strategy needs the reduce stage
itself (k-means||, k-center, clustering) and is run by the engine's selection drivers.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alscale.exceptions import StrategyError

__all__ = ["STRATEGIES", "ScoringBatch", "Strategy", "get_strategy", "register"]


@dataclass
class ScoringBatch:
    """What a scorer sees for one record batch.

    Attributes
    ----------
    probs : ndarray of shape (n, c)
        Class probabilities (the committee mean for a committee).
    keys : ndarray of shape (n,), uint64
        Row keys, for reproducible randomness.
    seed : int
    member_probs : ndarray of shape (m, n, c) or None
        Each committee member's probabilities.
    embeddings : ndarray of shape (n, d) or None
        Penultimate-layer embeddings.
    """

    probs: np.ndarray
    keys: np.ndarray
    seed: int = 0
    member_probs: np.ndarray | None = None
    embeddings: np.ndarray | None = None


@dataclass(frozen=True)
class Strategy:
    """A registered selection strategy.

    Attributes
    ----------
    name : str
        The ``--strategy`` value.
    kind : {"topk", "diversity"}
    score : callable or None
        ``score(batch: ScoringBatch) -> ndarray (n,)`` for top-K strategies.
    needs_embedding, needs_committee : bool
    description : str
    make_builder : callable or None
        Diversity strategies: ``make_builder(params: dict) -> builder``; the builder takes
        ``add(ids, keys, probs, embeddings, selectable, labeled)`` per record batch and
        ``finish() -> state`` (one state per shard).
    select : callable or None
        Diversity strategies: ``select(group: ShardGroup, k: int, seed: int, params: dict)
        -> Selection`` (see :mod:`alscale.reduce.shardgroup`).
    prepare : callable or None
        Diversity strategies that need a look at the pool before the main scan:
        ``prepare(sample_rows, k, seed, params) -> dict`` of extra builder/select parameters,
        where ``sample_rows(m, stream) -> (rows, selectable_count)`` returns the ``m``
        selectable rows with the smallest ``row_uniform(key, seed, stream)`` (``u``, ``key``,
        ``embedding``), gathered from every shard.
    defaults : dict
        The strategy's parameters and their default values.
    """

    name: str
    kind: str
    score: Callable[[ScoringBatch], np.ndarray] | None = None
    needs_embedding: bool = False
    needs_committee: bool = False
    description: str = ""
    make_builder: Callable[[dict], Any] | None = None
    select: Callable[..., Any] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    prepare: Callable[..., dict] | None = None


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add ``strategy`` to the registry.

    Parameters
    ----------
    strategy : Strategy
        Its ``name`` becomes a ``--strategy`` value.

    Returns
    -------
    Strategy
        ``strategy`` itself.

    Raises
    ------
    StrategyError
        A strategy of that name is registered already.
    """
    if strategy.name in STRATEGIES:
        raise StrategyError(f"Expected a new strategy name. Got {strategy.name!r}, which is registered already.")
    STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategy(name: str) -> Strategy:
    """Look a strategy up by name.

    Parameters
    ----------
    name : str
        A registered name (:data:`STRATEGIES`), e.g. ``"margin"``.

    Returns
    -------
    Strategy

    Raises
    ------
    StrategyError
        ``name`` is not a registered name (the message suggests the closest one).
    """
    if not isinstance(name, str):
        raise StrategyError(f"The strategy must be a name, one of {sorted(STRATEGIES)}. Got {name!r} instead.")
    try:
        return STRATEGIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, STRATEGIES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise StrategyError(f"Unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}.{hint}") from None
