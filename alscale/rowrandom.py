"""Row keys and per-row random numbers that do not depend on how a pool is sharded.

Every row id (int64 or string) maps to a 64-bit *key*; random numbers are a hash of
``(seed, stream, key)``.  Any process that holds a row draws the same number for it, so a
random choice made shard by shard equals the one a single process would make.

* :func:`id_keys` - ids -> uint64 keys (int ids keep their value, strings are hashed).
* :func:`row_uniform` - keys -> uniform floats in [0, 1), one stream per ``(seed, stream)``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

__all__ = ["id_keys", "row_uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser (Steele et al. 2014) on uint64 values."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def id_keys(ids: npt.ArrayLike) -> np.ndarray:
    """Map row ids to stable 64-bit keys.

    Parameters
    ----------
    ids : array-like of shape (n,)
        Integer ids (kept as their two's-complement bits) or strings/bytes (BLAKE2b, 8 bytes).

    Returns
    -------
    ndarray of shape (n,), dtype uint64
    """
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False).view(np.uint64)
    out = np.empty(len(arr), dtype=np.uint64)
    for i, value in enumerate(arr.tolist()):
        data = value if isinstance(value, bytes) else str(value).encode()
        out[i] = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    return out


def row_uniform(keys: np.ndarray, seed: int, stream: int = 0) -> np.ndarray:
    """Uniform random numbers in [0, 1) derived from ``(seed, stream, key)``.

    Parameters
    ----------
    keys : ndarray of shape (n,), dtype uint64
        Row keys from :func:`id_keys`.
    seed : int
        The run's seed.
    stream : int
        Independent stream number (for example the k-means|| round).

    Returns
    -------
    ndarray of shape (n,), dtype float64
    """
    mask = 0xFFFFFFFFFFFFFFFF
    # seed and stream each go through the mix: a sum like seed * P + stream would give seed s + 1's
    # stream 0 to seed s's stream P (splitmix64 is a bijection, so distinct streams of a seed never meet)
    salt = _splitmix64(_splitmix64(np.array([int(seed) & mask], dtype=np.uint64)) ^ np.uint64(int(stream) & mask))[0]
    mixed = _splitmix64(_splitmix64(np.asarray(keys, dtype=np.uint64) ^ salt))
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
