"""Run one model, or a committee, on feature batches: the stateful part of an actor.

Load once in ``__init__``, then call on batches (the Ray Data "callable class" pattern).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from alscale.exceptions import ModelContractError
from alscale.model.contract import ModelContract, check_probabilities, error_detail, load_session
from alscale.pool.reader import id_at
from alscale.rowwise import row_max, row_sum

__all__ = ["BATCH_SIZE_CANDIDATES", "DEFAULT_BATCH_SIZE", "ModelOutputs", "ModelRunner", "check_committee", "choose_batch_size", "softmax"]

#: The batch size ``batch_size="auto"`` starts from: the best for narrow models, alone or with
#: another actor on the same machine (larger batches lose up to 9% when two actors share a cache).
DEFAULT_BATCH_SIZE = 2048
#: Model run sizes ``batch_size="auto"`` chooses from: the default, or a smaller batch for a
#: wide model, whose activations then stay in cache.
BATCH_SIZE_CANDIDATES = (512, 1024, 2048)
#: What each model run is charged besides the model when choosing its size.  A scan reads a few
#: runs' worth of rows at once (about 1 MiB of features), so its per-batch work (reading, checks,
#: scores, top-K: about 130 µs for a narrow model) is shared by them; counting 100 µs per run
#: keeps the default unless a smaller run is clearly cheaper, as it is for wide models.
PER_BATCH_OVERHEAD_S = 100e-6
#: How much cheaper per row another size must time than the default to be chosen instead
#: (the fastest of several runs varies by 1-3% from probe to probe).
SWITCH_MARGIN = 0.02
#: The largest feature block ``batch_size="auto"`` may try (bytes of float32 features).
MAX_AUTO_BATCH_BYTES = 32 << 20


def choose_batch_size(
    seconds_per_batch: Mapping[int, float],
    per_batch_overhead: float = PER_BATCH_OVERHEAD_S,
    default: int = DEFAULT_BATCH_SIZE,
    margin: float = SWITCH_MARGIN,
) -> int:
    """The batch size with the lowest cost per row, ``(model seconds + overhead) / rows``.

    The default stays unless another size costs more than ``margin`` less per row.

    Parameters
    ----------
    seconds_per_batch : mapping of int to float
        Batch size (rows) -> seconds the model takes on one batch of that size.
    per_batch_overhead : float
        Seconds every batch costs besides the model.
    default : int
        The size kept when none is clearly cheaper (or the cheapest, if it was not timed).
    margin : float
        Fraction of the default's cost per row that another size must save.

    Returns
    -------
    int
    """
    if not seconds_per_batch:
        raise ValueError("choose_batch_size needs at least one timed batch size.")
    cost = {b: (t + per_batch_overhead) / b for b, t in seconds_per_batch.items()}
    best = min(sorted(cost), key=cost.get)  # the smaller size on a tie
    if default in cost and cost[best] >= (1 - margin) * cost[default]:
        return default
    return best


@dataclass
class ModelOutputs:
    """Model outputs for one batch.

    Attributes
    ----------
    probs : ndarray of shape (n, c), float32
        Class probabilities (the mean over members for a committee).
    member_probs : ndarray of shape (m, n, c) or None
        Each member's probabilities (committees only).
    embeddings : ndarray of shape (n, h) or None
        The first member's embedding output, when it has one and it was asked for.
    """

    probs: np.ndarray
    member_probs: np.ndarray | None = None
    embeddings: np.ndarray | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32, copy=True)
    z -= row_max(z)[:, None]
    np.exp(z, out=z)
    z /= row_sum(z)[:, None]
    return z


def check_committee(contracts: Sequence[ModelContract]) -> None:
    """Committee members must agree on classes and input width."""
    first = contracts[0]
    for other in contracts[1:]:
        if other.classes != first.classes:
            raise ModelContractError(
                f"Committee members disagree on classes: {first.path!r} has {list(first.classes)}, {other.path!r} has {list(other.classes)}."
            )
        if other.input_width != first.input_width:
            raise ModelContractError(
                f"Committee members disagree on input width: {first.path!r} takes {first.input_width}, {other.path!r} takes {other.input_width}."
            )


#: The largest squared norm of an embedding row: distances between two rows, and BADGE's gradient
#: rows (twice as long squared at most), stay within float32 (max / 16: about 2.1e37).
EMBEDDING_SQ_NORM_LIMIT = float(np.finfo(np.float32).max) / 16


class ModelRunner:
    """One ONNX Runtime session per member, created once.

    Parameters
    ----------
    contracts : sequence of ModelContract
        One per member (from :func:`alscale.model.inspect_model`).
    threads : int
        Intra-op threads per session.
    want_embeddings : bool
        Fetch the (first member's) embedding output too.
    """

    def __init__(self, contracts: Sequence[ModelContract], threads: int = 1, want_embeddings: bool = False):
        self.contracts = list(contracts)
        self.sessions = [load_session(c.path, threads) for c in self.contracts]
        self.want_embeddings = want_embeddings and self.contracts[0].embedding_output is not None
        # per member: (session, input name, outputs to fetch, input dtype, outputs are logits)
        self._members = [
            (
                session,
                c.input_name,
                [c.class_output] + ([c.embedding_output] if i == 0 and self.want_embeddings else []),
                np.dtype(np.float64 if "double" in c.input_type else np.float32),
                c.output_kind == "logits",
            )
            for i, (c, session) in enumerate(zip(self.contracts, self.sessions))
        ]
        #: The most rows one session run takes (None: any); larger batches are scored in slices.
        self.rows_per_run: int | None = None

    def __call__(self, features: np.ndarray, ids: np.ndarray | None = None) -> ModelOutputs:
        """Score one batch of features (n, d), in runs of at most :attr:`rows_per_run` rows.

        Every value must be finite and within [0, 1]; row sums are checked on a sample of rows of
        every batch (:func:`check_probabilities` names the problem).  ``ids`` (n,), if given,
        only name a row in an error.
        """
        step = self.rows_per_run
        if step and features.shape[0] > step:
            # the model runs on slices of its best size; the per-batch work around it (checks,
            # scores, top-K) runs once on the whole batch
            runs = [self._run(features[i : i + step]) for i in range(0, features.shape[0], step)]
            member_probs = [np.concatenate(parts) for parts in zip(*(probs for probs, _ in runs))]
            embeddings = None if runs[0][1] is None else np.concatenate([emb for _, emb in runs])
        else:
            member_probs, embeddings = self._run(features)
        for member, probs in enumerate(member_probs):
            self._check(probs, member, ids)
        if embeddings is not None:
            self._check_embeddings(embeddings, ids)
        if len(member_probs) == 1:
            return ModelOutputs(member_probs[0], None, embeddings)
        stacked = np.stack(member_probs)
        return ModelOutputs(stacked.mean(axis=0), stacked, embeddings)

    def _run(self, features: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
        """One session run per member: each member's probabilities (n, c) float32, and the embedding."""
        member_probs = []
        embeddings = None
        for member, (session, input_name, fetch, dtype, logits) in enumerate(self._members):
            x = features if features.dtype == dtype else features.astype(dtype)
            try:
                results = session.run(fetch, {input_name: x})
            except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own types: InvalidArgument, Fail, ...)
                raise ModelContractError(
                    f"Model {self.contracts[member].path!r} cannot score a batch of {x.shape[0]} rows x {x.shape[1]} features: "
                    f"{error_detail(exc, 300)}"
                ) from None
            values = results[0]
            if logits:
                probs = softmax(values)
            else:
                probs = values if values.dtype == np.float32 else values.astype(np.float32)
            member_probs.append(probs)
            if len(results) > 1:
                embeddings = np.asarray(results[1], dtype=np.float32)
        return member_probs, embeddings

    def fastest_batch_size(
        self,
        width: int,
        candidates: Sequence[int] = BATCH_SIZE_CANDIDATES,
        seconds_per_size: float = 0.025,
    ) -> tuple[int, dict[int, float]]:
        """Time the model on synthetic batches and choose a batch size (:func:`choose_batch_size`).

        The candidates are swept twice (the second time in reverse order); each time a size runs
        once to warm up, then at least twice and for about ``seconds_per_size / 2``.  Each
        size's fastest run counts.  Sizes whose features would exceed 32 MiB are not tried.

        Parameters
        ----------
        width : int
            Features per row (d).

        Returns
        -------
        batch_size : int
        seconds_per_batch : dict of int to float
            The fastest time of each size tried.
        """
        sizes = sorted(b for b in candidates if b * width * 4 <= MAX_AUTO_BATCH_BYTES) or [min(candidates)]
        x = np.random.default_rng(0).standard_normal((sizes[-1], width), dtype=np.float32)
        seconds = dict.fromkeys(sizes, np.inf)
        # two sweeps, the second in reverse order, so a burst of load elsewhere slows no size alone;
        # runs of one size follow each other, as batches do in a scan
        for order in (sizes, sizes[::-1]):
            for b in order:
                batch = x[:b]
                self(batch)  # warm-up: the session allocates for a new shape
                deadline = time.perf_counter() + seconds_per_size / 2
                runs = 0
                while runs < 2 or (time.perf_counter() < deadline and runs < 25):
                    t0 = time.perf_counter()
                    self(batch)
                    seconds[b] = min(seconds[b], time.perf_counter() - t0)
                    runs += 1
        return choose_batch_size(seconds), seconds

    def _check_embeddings(self, embeddings: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Refuse NaN, inf, or rows too large for float32 distances in the embedding output.

        A diversity strategy measures squared distances between rows in float32: NaN or inf makes
        them NaN, and a row whose squared norm passes :data:`EMBEDDING_SQ_NORM_LIMIT` makes them
        overflow (BADGE's gradient rows are at most twice as long squared; the distance of two
        rows at most four times).  Either way it would pick from garbage.

        The sum of squares of the whole batch by one dot product sees every value (NaN and inf
        propagate) in one pass; only a batch that fails it is looked at row by row.
        """
        if embeddings.size == 0:
            return
        flat = embeddings.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is looked at below, not warned of
            total = float(flat @ flat)
        if total <= EMBEDDING_SQ_NORM_LIMIT:  # False for NaN and inf too
            return
        contract = self.contracts[0]
        what = f"the embedding output {contract.embedding_output!r} of model {contract.path!r}"
        bad = ~np.isfinite(embeddings).all(axis=1)
        if bad.any():
            raise ModelContractError(f"Expected finite values in {what}. Got NaN or inf in {int(bad.sum())} of {len(bad)} rows of a "
                                     f"batch ({_which_row(int(np.flatnonzero(bad)[0]), ids)}), from finite features.")
        wide = embeddings.astype(np.float64)
        sq = np.einsum("ij,ij->i", wide, wide)
        big = sq > EMBEDDING_SQ_NORM_LIMIT
        if big.any():
            first = int(np.flatnonzero(big)[0])
            raise ModelContractError(f"Expected rows of {what} whose squared norm is at most {EMBEDDING_SQ_NORM_LIMIT:.2g}, so that "
                                     f"distances between them fit float32. Got {int(big.sum())} of {len(big)} rows of a batch above "
                                     f"it ({_which_row(first, ids)}: {sq[first]:.3g}).")

    def _check(self, probs: np.ndarray, member: int, ids: np.ndarray | None = None, tol: float = 1e-3) -> None:
        """The per-batch contract check, kept cheap: min and max see every value (NaN propagates)."""
        if probs.size == 0:
            return
        lo, hi = probs.min(), probs.max()
        if not (lo >= -tol and hi <= 1 + tol):
            self._refuse(probs, member, ids, tol)
        sums = probs[:: -(-probs.shape[0] // 64)].sum(axis=1, dtype=np.float64)  # row sums on <= 64 rows
        if np.abs(sums - 1.0).max() > tol:
            self._refuse(probs, member, ids, tol)

    def _refuse(self, probs: np.ndarray, member: int, ids: np.ndarray | None, tol: float) -> None:
        """Raise :class:`ModelContractError` for a batch that failed :meth:`_check`, naming the model and a row."""
        contract = self.contracts[member]
        bad = ~np.isfinite(probs).all(axis=1)
        if bad.any():  # the run fails on this batch: its rows are counted, later batches are not read
            raise ModelContractError(
                f"Expected finite probabilities from model {contract.path!r}. Got NaN or inf in output {contract.class_output!r} for "
                f"{int(bad.sum())} of {len(bad)} rows of the first batch where one was found ({_which_row(int(np.flatnonzero(bad)[0]), ids)}); "
                "later batches were not scored.")
        check_probabilities(probs, contract.class_output, tol)  # raises, saying what is wrong


def _which_row(row: int, ids: np.ndarray | None) -> str:
    """``"e.g. id 2500"`` (or ``"row 3 of the batch"`` without ids), for a message."""
    return f"e.g. id {id_at(ids, row)!r}" if ids is not None else f"row {row} of the batch"
