"""The reference mode: exact scikit-learn ``NearestNeighbors(metric="cosine")`` over SQL's copy."""
from __future__ import annotations

import numpy as np

from ..errors import DependencyError
from .chroma_index import Neighbour


class ReferenceIndex:
    """Brute-force exact neighbours, independent of Chroma (built from the catalog)."""

    @staticmethod
    def preload() -> None:
        """Import scikit-learn now (about a second), e.g. before taking the home lock."""
        try:
            import sklearn.neighbors  # noqa: F401
        except ImportError:
            raise DependencyError("the reference mode needs scikit-learn (a dependency of facedb): reinstall facedb, or pip install scikit-learn") from None

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        try:
            from sklearn.neighbors import NearestNeighbors
        except ImportError:
            raise DependencyError("the reference mode needs scikit-learn (a dependency of facedb): reinstall facedb, or pip install scikit-learn") from None
        self._ids = ids
        self._nn = None
        if len(ids):
            self._nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(vectors)

    def query(self, vectors: np.ndarray, k: int) -> list[list[Neighbour]]:
        if self._nn is None:
            return [[] for _ in range(len(vectors))]
        dist, idx = self._nn.kneighbors(np.asarray(vectors, dtype=np.float32), n_neighbors=min(k, len(self._ids)))
        return [[Neighbour(int(self._ids[j]), max(0.0, float(d))) for d, j in zip(drow, irow)]
                for drow, irow in zip(dist, idx)]
