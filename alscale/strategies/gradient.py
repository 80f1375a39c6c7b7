"""BADGE's gradient embedding, kept as two factors per row.

The gradient of the cross-entropy loss at the predicted label with respect to the last
layer is ``g = (p - onehot(argmax p)) (outer) h`` with ``h`` the penultimate-layer embedding.
alscale keeps ``a = p - onehot(argmax p)`` (C,) and ``h`` (D,) per row and never forms the
(n, C*D) matrix; the predicted class keeps its ``p - 1`` term.

* :func:`gradient_factors` - probs, embeddings -> (a, h).
* :func:`gradient_embeddings` - the explicit (n, C*D) matrix, for tests on tiny inputs.

The selection over these factors (k-means|| seeding, then weighted k-means++ to exactly k
rows) is in :mod:`alscale.reduce.badge`; distances between factored embeddings are
:func:`alscale.reduce.kmeans_parallel.factored_sq_distances`.

References
----------
Ash, J. T., Zhang, C., Krishnamurthy, A., Langford, J., Agarwal, A. (2020). Deep Batch
Active Learning by Diverse, Uncertain Gradient Lower Bounds. ICLR.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alscale.exceptions import StrategyError

__all__ = ["gradient_embeddings", "gradient_factors"]


def gradient_factors(probs: npt.ArrayLike, embeddings: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The two factors of each row's last-layer gradient embedding.

    Parameters
    ----------
    probs : array-like of shape (n, C)
    embeddings : array-like of shape (n, D)

    Returns
    -------
    a : ndarray of shape (n, C), float32
        ``p - onehot(argmax p)`` (ties go to the lowest class index).
    h : ndarray of shape (n, D), float32

    Raises
    ------
    StrategyError
        The arrays are not (n, C) and (n, D) with the same n.
    """
    a = np.array(probs, dtype=np.float32, copy=True)
    h = np.asarray(embeddings, dtype=np.float32)
    if a.ndim != 2 or h.ndim != 2 or len(a) != len(h):
        raise StrategyError(f"Expected probs of shape (n, C) and embeddings of shape (n, D). Got {a.shape} and {h.shape}.")
    a[np.arange(len(a)), np.argmax(a, axis=1)] -= 1.0
    return a, h


def gradient_embeddings(probs: npt.ArrayLike, embeddings: npt.ArrayLike) -> np.ndarray:
    """Explicit gradient embeddings ``a (outer) h`` as an (n, C*D) float32 matrix (tests only)."""
    a, h = gradient_factors(probs, embeddings)
    return (a[:, :, None] * h[:, None, :]).reshape(len(a), -1)
