"""Nearest neighbours: similarity is Euclidean distance in a latent (or pixel) space."""

from __future__ import annotations

import numpy as np


def knn(queries: np.ndarray, base: np.ndarray, k: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``base`` for each row of ``queries``, by Euclidean distance.

    (Q, d), (N, d) -> distances (Q, k) float64 ascending, indices (Q, k) int64. Ties keep the
    lower index first. Queries are processed ``chunk`` at a time so memory stays O(chunk * N).
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    base = np.asarray(base, dtype=np.float64)
    assert queries.shape[1] == base.shape[1], (queries.shape, base.shape)
    k = min(k, len(base))
    base_sq = np.einsum("nd,nd->n", base, base)
    dists, index = np.empty((len(queries), k)), np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        # |q - b|^2 = |q|^2 + |b|^2 - 2 q.b, clipped at 0 against rounding
        d2 = np.maximum(np.einsum("qd,qd->q", q, q)[:, None] + base_sq[None, :] - 2.0 * q @ base.T, 0.0)
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < len(base) else np.tile(np.arange(len(base)), (len(q), 1))
        order = np.lexsort((part, np.take_along_axis(d2, part, axis=1)), axis=1)
        idx = np.take_along_axis(part, order, axis=1)
        index[start:start + len(q)] = idx
        dists[start:start + len(q)] = np.sqrt(np.take_along_axis(d2, idx, axis=1))
    return dists, index
