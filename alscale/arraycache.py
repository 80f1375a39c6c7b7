"""Arrays kept in a folder between runs: what a strategy may reuse, such as Cluster-Margin's centroids.

A strategy in :mod:`alscale.reduce` never touches files: the engine hands it an
:class:`ArrayCache` (or None), and the strategy names what it stores by a kind and a variant
(a digest of the settings the array depends on).  Arrays are written atomically
(:mod:`alscale._atomic`), so a reader never sees half of one.
"""

from __future__ import annotations

import os

import numpy as np

from alscale._atomic import temp_beside
from alscale.exceptions import OutputError

__all__ = ["ArrayCache"]


class ArrayCache:
    """``<directory>/<kind>-<key>-<variant>.npy`` files.

    Parameters
    ----------
    directory : str
        The folder (created on the first save).
    key : str
        What every array here depends on beyond a strategy's own settings (the engine's digest
        of the models, the pool and the excluded and labeled ids).
    """

    def __init__(self, directory: str | os.PathLike, key: str):
        self.directory = str(directory)
        self.key = str(key)

    def path(self, kind: str, variant: str) -> str:
        """The file of one array."""
        return os.path.join(self.directory, f"{kind}-{self.key}-{variant}.npy")

    def load(self, kind: str, variant: str) -> np.ndarray | None:
        """The array stored under ``kind`` and ``variant``, or None if there is none."""
        path = self.path(kind, variant)
        return np.load(path) if os.path.exists(path) else None

    def save(self, kind: str, variant: str, array: np.ndarray) -> str:
        """Store ``array`` (atomically); returns its path.

        Raises
        ------
        OutputError
            The folder cannot be written.
        """
        path = self.path(kind, variant)
        try:
            with temp_beside(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.save would add ".npy" to a name
                np.save(fh, array)
        except OSError as exc:
            raise OutputError(f"Cannot write the cache file {path!r}: {exc}") from exc
        return path

    def __repr__(self) -> str:
        return f"ArrayCache({self.directory!r}, {self.key!r})"
