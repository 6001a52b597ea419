"""Nearest neighbours: similarity is Euclidean distance in a latent (or pixel) space.

One :class:`NeighbourIndex` is built per set of vectors (a dataset's latents under one model, or
its pixels) and answers exact k-nearest queries. It picks its structure from the shape of the data:

    d <= KDTREE_MAX_DIM and N >= KDTREE_MIN_ROWS  ->  scipy cKDTree (exact; ~tens of us per query
                                                      in 2-D, at 21,785 rows and at 1,000,000)
    otherwise (64-D AE latent, 12,288-D pixels)  ->  brute force: one BLAS product per block of
                                                      queries, then an exact re-rank of the best

    d > KDTREE_MAX_DIM, d <= ANN_MAX_DIM and         ->  a faiss index (ANN_DEFAULT: HNSW or IVF,
    N >= ANN_MIN_ROWS (a 64-D embedding at survey        see build_ann), then the same exact re-rank
    scale)                                               of its candidates
    raw pixels of a catalogue                        ->  PixelIndex: brute force computed from the uint8
                                                         images block by block, no float copy

A KD-tree prunes well only in a few dimensions; beyond ~16 it visits most leaves and a matrix
product over all rows is faster -- until the rows number hundreds of thousands, where one product
costs tens of milliseconds. There an approximate index proposes ``k + RERANK_MARGIN`` candidates
and the distances returned are still exact (re-ranked in float64 from the vectors themselves); only
a true neighbour the index missed can be absent (recall@10 measured >= 0.95 at 1,000,000 rows by
``python -m benchmarks``; ``python -m benchmarks.ann`` compares HNSW and IVF, see ANN_DEFAULT).
Small catalogues and the 2-D latent stay exact.

The rotation/flip-invariant query (:meth:`NeighbourIndex.query_views`) takes the latents of the 8
dihedral views of each query (the caller encodes them) and ranks each galaxy by its best distance
over the views.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from threadpoolctl import ThreadpoolController  # installed with scikit-learn

from galaxy_vae.data import CROP, GalaxyData, model_view

log = logging.getLogger(__name__)

KDTREE_MAX_DIM = 16  # above this a KD-tree degrades towards visiting every leaf
KDTREE_MIN_ROWS = 256  # below this a matrix product is as fast and needs no build
RERANK_MARGIN = 32  # extra brute-force candidates re-ranked exactly (float32 rounding can swap near ties)
BLOCK_ELEMENTS = 1 << 23  # distance-matrix entries per block (64 MB in float64)
ANN_MIN_ROWS = 100_000  # below this a brute-force query costs a few ms: stay exact
ANN_MAX_DIM = 1024  # an embedding, not raw pixels
ANN_METHODS = ("ivf", "hnsw")
# Chosen by measurement at 1,000,000 64-D unit vectors on 2 cores (python -m benchmarks.ann,
# benchmarks/README.md): HNSW 0.15 ms a query at recall@10 1.0, built in 41 s, 504 MB; IVF 3.6 ms at
# 0.985 (the cells it must probe for that recall cost more than the graph walk), 20 s, 253 MB.
ANN_DEFAULT = "hnsw"
IVF_ROWS_PER_CELL = 256  # cells: N / this, rounded to a power of two (at most 8,192)
IVF_PROBE_SHARE = 32  # one cell in this many searched per query (recall@10 ~0.95-1.0 at 250k rows)
IVF_TRAIN_PER_CELL = 40  # k-means trained on this many rows per cell (faiss's own minimum is 39)
PIXEL_BLOCK = 512  # galaxies converted to float at a time by PixelIndex (25 MB at 64x64x3)
HNSW_M = 32  # links per node
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 96


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # scans the loaded BLAS libraries once


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
        everything = np.tile(np.arange(len(base)), (len(q), 1))
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < len(base) else everything
        order = np.lexsort((part, np.take_along_axis(d2, part, axis=1)), axis=1)
        idx = np.take_along_axis(part, order, axis=1)
        index[start:start + len(q)] = idx
        dists[start:start + len(q)] = np.sqrt(np.take_along_axis(d2, idx, axis=1))
    return dists, index


@dataclass(frozen=True)
class Neighbours:
    """k nearest rows per query, nearest first; ties in distance keep the lower row first."""

    distances: np.ndarray  # (Q, k) float64 Euclidean distances
    indices: np.ndarray  # (Q, k) int64 rows of the indexed data


def pixel_features(images: np.ndarray, crop: int = CROP) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, crop*crop*3) float32 in [0, 1]: the pixels a model is fed.

    Uses :func:`galaxy_vae.data.model_view`, so pixel search sees the same central crop, scaled
    the same way, as the models do. 64x64 images pass through the crop unchanged.
    """
    view = model_view(np.asarray(images), crop)  # (N, crop, crop, 3) uint8, a view
    out = view.reshape(len(view), -1).astype(np.float32)
    out *= np.float32(1.0 / 255.0)  # in place: no second float copy of a large array
    return out


def _sort_rows(dist: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: order by (distance, index) and keep the first k."""
    order = np.lexsort((idx, dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


class NeighbourIndex:
    """Exact Euclidean k-nearest-neighbour index over the rows of ``vectors`` (N, d).

    Build once per dataset and space (the app caches it); queries never modify it. ``method`` is
    "kdtree" or "brute" (see the module docstring for the rule).
    """

    def __init__(self, vectors: np.ndarray, method: str | None = None, saved: Path | None = None):
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"NeighbourIndex needs a non-empty (N, d) array, got shape {vectors.shape}")
        if vectors.dtype not in (np.float32, np.float64):
            vectors = vectors.astype(np.float64)
        self.n, self.dim = vectors.shape
        if method is None:
            method = choose_method(self.n, self.dim)
        assert method in ("kdtree", "brute", *ANN_METHODS), method
        self.method, self.saved_path, self._ann = method, None, None
        if method == "kdtree":
            # balanced_tree=False (sliding midpoint) builds ~3x faster at 1M rows, same query speed
            self._tree = cKDTree(vectors, balanced_tree=False)
        else:
            # float32 pixels stay float32 (no 2x copy of a large matrix); products run in that dtype
            # and the best candidates are re-ranked in float64.
            self._base = np.ascontiguousarray(vectors)
            self._base_sq = np.einsum("nd,nd->n", self._base, self._base)
        if method in ANN_METHODS:
            self._ann = _load_ann(saved, self.n, self.dim) if saved is not None else None
            if self._ann is not None:
                self.saved_path = saved
            else:
                self._ann = build_ann(self._base, method)
        log.debug("NeighbourIndex(%d x %d) using %s", self.n, self.dim, method)

    @property
    def savable(self) -> bool:
        """Whether this index has a structure worth writing to disk (the approximate ones)."""
        return self._ann is not None

    def save(self, path: Path) -> None:
        """Write the approximate index to ``path`` (faiss's own format)."""
        import faiss

        faiss.write_index(self._ann, str(path))

    def ann_bytes(self) -> int:
        """Size of the approximate index as serialised (its memory, give or take)."""
        import faiss

        return int(faiss.serialize_index(self._ann).size) if self._ann is not None else 0

    def __len__(self) -> int:
        return self.n

    def _check(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64 if self.method == "kdtree" else self._base.dtype)
        if z.shape[-1] != self.dim:
            raise ValueError(f"query has dimension {z.shape[-1]}, the index {self.dim}")
        return z

    def query(self, z: np.ndarray, k: int = 12) -> Neighbours:
        """Exact k nearest rows of each query: z (Q, d) or (d,) -> Neighbours with (Q, k) arrays."""
        z = np.atleast_2d(self._check(z))
        k = max(1, min(int(k), self.n))
        if self.method == "kdtree":
            dist, idx = self._tree.query(z, k=k)
            dist, idx = dist.reshape(len(z), k), idx.reshape(len(z), k).astype(np.int64)
            return Neighbours(*_sort_rows(dist, idx, k))  # ties in index order, like knn
        if self._ann is not None:
            return Neighbours(*self._approximate(z[:, None, :], k))
        return Neighbours(*self._brute(z[:, None, :], k))

    def query_views(self, view_latents: np.ndarray, k: int = 12) -> Neighbours:
        """Rotation/flip-invariant query: (V, d) or (Q, V, d) views -> Neighbours (Q, k).

        Each row's distance is its minimum over the V views (8 dihedral views) of the query. Exact:
        a galaxy in the true top k is in the top k of the view that attains its minimum, so the
        union of the per-view top k (KD-tree) holds the answer. Views run along axis 1: latents of
        views stacked view-first, (V, Q, d), go in as ``z.transpose(1, 0, 2)``.
        """
        z = self._check(view_latents)
        if z.ndim == 2:
            z = z[None]  # (V, d) -> (1, V, d)
        if z.ndim != 3:
            raise ValueError(f"view latents must be (V, d) or (Q, V, d), got shape {z.shape}")
        k = max(1, min(int(k), self.n))
        n_q, n_v = z.shape[:2]
        if self._ann is not None:
            return Neighbours(*self._approximate(z, k))
        if self.method == "brute":
            return Neighbours(*self._brute(z, k))
        dist, idx = self._tree.query(z.reshape(n_q * n_v, self.dim), k=k)
        dist = dist.reshape(n_q, n_v * k)
        idx = idx.reshape(n_q, n_v * k).astype(np.int64)
        out_d, out_i = np.empty((n_q, k)), np.empty((n_q, k), dtype=np.int64)
        for q in range(n_q):
            # best distance per galaxy: sort by (index, distance), keep each index's first entry
            order = np.lexsort((dist[q], idx[q]))
            i, d = idx[q][order], dist[q][order]
            first = np.r_[True, i[1:] != i[:-1]]
            best_d, best_i = _sort_rows(d[first][None], i[first][None], k)
            out_d[q], out_i[q] = best_d[0], best_i[0]
        return Neighbours(out_d, out_i)

    def _brute(self, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k for (Q, V, d) queries, each row's distance the minimum over its V views."""
        # One BLAS thread: these products are memory-bound, and on shared cores (several app
        # sessions) OpenBLAS's spinning threads can stall a 1 ms product for hundreds of ms.
        with _blas().limit(limits=1, user_api="blas"):
            return self._brute_blocks(z, k)

    def _brute_blocks(self, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n_q, n_v = z.shape[:2]
        m = min(self.n, k + RERANK_MARGIN)
        out_d, out_i = np.empty((n_q, k)), np.empty((n_q, k), dtype=np.int64)
        step = max(1, BLOCK_ELEMENTS // (self.n * n_v))
        for start in range(0, n_q, step):
            q = z[start:start + step]  # (B, V, d)
            flat = q.reshape(-1, self.dim)
            # approximate |q - b|^2 in the base dtype: (B*V, N), then min over views: (B, N)
            d2 = np.einsum("qd,qd->q", flat, flat)[:, None] + self._base_sq[None, :] - 2 * (flat @ self._base.T)
            d2 = d2.reshape(len(q), n_v, self.n).min(axis=1)
            cand = np.argpartition(d2, m - 1, axis=1)[:, :m] if m < self.n else np.tile(np.arange(self.n), (len(q), 1))
            exact = self._exact_distances(q, cand)  # (B, m) float64
            out_d[start:start + len(q)], out_i[start:start + len(q)] = _sort_rows(exact, cand, k)
        return out_d, out_i

    def _approximate(self, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top k for (Q, V, d) queries from the approximate index's candidates (the union over the
        views of each view's k + RERANK_MARGIN), re-ranked exactly."""
        n_q, n_v = z.shape[:2]
        m = min(self.n, k + RERANK_MARGIN)
        with _faiss_threads(1):  # one query at a time: threads only add start-up cost
            _, cand = self._ann.search(np.ascontiguousarray(z.reshape(-1, self.dim), dtype=np.float32), m)
        cand = cand.reshape(n_q, n_v * m)
        out_d, out_i = np.full((n_q, k), np.inf), np.full((n_q, k), -1, dtype=np.int64)
        for q in range(n_q):
            rows = np.unique(cand[q][cand[q] >= 0])[None]  # (1, m') sorted, without faiss's -1 fillers
            exact = self._exact_distances(z[q:q + 1], rows)
            best_d, best_i = _sort_rows(exact, rows, k)
            out_d[q, :best_d.shape[1]], out_i[q, :best_i.shape[1]] = best_d[0], best_i[0]
        return out_d, out_i

    def _exact_distances(self, q: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Float64 min-over-views distances from q (B, V, d) to base rows cand (B, m), computed from
        differences (not |q|^2 + |b|^2 - 2 q.b), so duplicates are exactly 0 and ties stay ties."""
        out = np.full(cand.shape, np.inf)
        for b in range(len(q)):
            rows = self._base[cand[b]].astype(np.float64)  # (m, d)
            for view in q[b].astype(np.float64):  # one (m, d) difference at a time bounds memory
                diff = rows - view
                np.minimum(out[b], np.einsum("md,md->m", diff, diff), out=out[b])
        return np.sqrt(out)


class PixelRows:
    """The pixel features of uint8 images (:func:`pixel_features`), made only for the rows indexed:
    ``rows[i]`` (d,), ``rows[idx]`` (len(idx), d). What a pixel catalogue has instead of a float copy
    of every image (12,288 floats a galaxy: 1 GB at Galaxy10's 21,785)."""

    dtype = np.dtype(np.float32)

    def __init__(self, images: np.ndarray, crop: int = CROP):
        self.images, self.crop = images, crop
        self.shape = (len(images), crop * crop * 3)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        from galaxy_vae.store import release

        if isinstance(index, (int, np.integer)):
            out = pixel_features(self.images[int(index)][None], self.crop)[0]
        else:
            out = pixel_features(self.images[index], self.crop)
        release(self.images, 0, len(self.images))  # a page fault can map far more than the rows read
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # all of them, when really asked for
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


class PixelIndex:
    """Exact Euclidean k nearest in pixel space, computed from the uint8 images block by block
    (:data:`PIXEL_BLOCK` galaxies converted to float at a time, then dropped again from memory when
    the images are memory-mapped), so searching pixels holds no float copy of the catalogue. Same
    answers as a brute-force :class:`NeighbourIndex` over :func:`pixel_features`: candidates by
    the |q|^2 + |b|^2 - 2 q.b product, then an exact float64 re-rank by differences."""

    method = "pixels"
    savable = False
    saved_path = None

    def __init__(self, images: np.ndarray, squared_norms: np.ndarray | None = None, crop: int = CROP):
        self.images, self.crop = images, crop
        self.n, self.dim = len(images), crop * crop * 3
        self.squared_norms = squared_norms if squared_norms is not None else self._norms()

    def __len__(self) -> int:
        return self.n

    def _blocks(self):
        from galaxy_vae.store import release

        for start in range(0, self.n, PIXEL_BLOCK):
            stop = min(start + PIXEL_BLOCK, self.n)
            yield start, pixel_features(self.images[start:stop], self.crop)  # (B, d) float32
            release(self.images, start, stop)

    def _norms(self) -> np.ndarray:
        out = np.empty(self.n, dtype=np.float32)
        for start, feats in self._blocks():
            out[start:start + len(feats)] = np.einsum("nd,nd->n", feats, feats)
        return out

    def query(self, z: np.ndarray, k: int = 12) -> Neighbours:
        z = np.atleast_2d(np.asarray(z, dtype=np.float32))
        return self._search(z[:, None, :], k)

    def query_views(self, view_latents: np.ndarray, k: int = 12) -> Neighbours:
        z = np.asarray(view_latents, dtype=np.float32)
        return self._search(z[None] if z.ndim == 2 else z, k)

    def _search(self, z: np.ndarray, k: int) -> Neighbours:
        if z.shape[-1] != self.dim:
            raise ValueError(f"query has dimension {z.shape[-1]}, the index {self.dim}")
        n_q, n_v = z.shape[:2]
        k, m = max(1, min(int(k), self.n)), min(self.n, max(1, int(k)) + RERANK_MARGIN)
        flat = z.reshape(-1, self.dim)
        flat_sq = np.einsum("qd,qd->q", flat, flat)
        best_d, best_i = np.full((n_q, 0), np.inf, dtype=np.float32), np.empty((n_q, 0), dtype=np.int64)
        with _blas().limit(limits=1, user_api="blas"):
            for start, feats in self._blocks():
                sq = self.squared_norms[start:start + len(feats)]
                d2 = (flat_sq[:, None] + sq[None, :] - 2 * (flat @ feats.T)).reshape(n_q, n_v, -1).min(axis=1)
                d = np.concatenate([best_d, d2], axis=1)
                i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(feats)), d2.shape)], axis=1)
                keep = np.argpartition(d, m - 1, axis=1)[:, :m] if d.shape[1] > m else np.argsort(d, axis=1)
                best_d, best_i = np.take_along_axis(d, keep, axis=1), np.take_along_axis(i, keep, axis=1)
        out_d, out_i = np.empty((n_q, k)), np.empty((n_q, k), dtype=np.int64)
        for q in range(n_q):
            rows = np.sort(best_i[q])
            feats = pixel_features(self.images[rows], self.crop).astype(np.float64)  # (m, d)
            exact = np.full(len(rows), np.inf)
            for view in z[q].astype(np.float64):
                diff = feats - view
                np.minimum(exact, np.einsum("md,md->m", diff, diff), out=exact)
            d, i = _sort_rows(np.sqrt(exact)[None], rows[None], k)
            out_d[q], out_i[q] = d[0], i[0]
        from galaxy_vae.store import release

        release(self.images, 0, self.n)  # the re-ranked rows' pages (a fault can map a large folio)
        return Neighbours(out_d, out_i)


def choose_method(n: int, dim: int) -> str:
    """The structure for n vectors of dimension dim (the rule of the module docstring)."""
    if dim <= KDTREE_MAX_DIM:
        return "kdtree" if n >= KDTREE_MIN_ROWS else "brute"
    if n >= ANN_MIN_ROWS and dim <= ANN_MAX_DIM and _have_faiss():
        return ANN_DEFAULT
    return "brute"


@lru_cache(maxsize=1)
def _have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        log.warning("faiss is not installed: large high-dimensional catalogues are searched by brute force")
        return False
    return True


@contextlib.contextmanager
def _faiss_threads(n: int):
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_ann(vectors: np.ndarray, method: str = ANN_DEFAULT, seed: int = 0):
    """A faiss index over ``vectors`` (N, d), Euclidean: "ivf" (an inverted file of exact vectors,
    k-means cells) or "hnsw" (a navigable small-world graph). Unit vectors rank the same by cosine."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if method == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(x)
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    assert method == "ivf", method
    nlist = int(2 ** np.clip(round(np.log2(max(n / IVF_ROWS_PER_CELL, 1))), 0, 13))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
    rng = np.random.default_rng(seed)
    train = x[np.sort(rng.choice(n, size=min(n, nlist * IVF_TRAIN_PER_CELL), replace=False))]
    index.cp.seed = seed
    index.train(train)
    index.add(x)
    index.nprobe = _nprobe(nlist)
    return index


def _nprobe(nlist: int) -> int:
    return max(1, min(nlist, max(16, nlist // IVF_PROBE_SHARE)))


def _load_ann(path: Path, n: int, dim: int):
    """A saved faiss index when it holds n vectors of dimension dim, else None (rebuilt)."""
    import faiss

    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:  # faiss raises RuntimeError for files it cannot parse
        log.warning("ignoring unreadable index %s: %s", path, exc)
        return None
    if index.ntotal != n or index.d != dim:
        return None
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = _nprobe(index.nlist)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def neighbour_table(neighbours: Neighbours, data: GalaxyData, row: int = 0) -> list[dict]:
    """The neighbours of query ``row`` as JSON-ready dicts, nearest first.

    Keys: rank (from 1), index (row in ``data``), id, label, class_name, distance. The CLI's
    ``search --json`` and the map page's CSV export both print exactly these rows.
    """
    out = []
    for rank, (i, d) in enumerate(zip(neighbours.indices[row], neighbours.distances[row]), start=1):
        label = int(data.labels[i])
        out.append({"rank": rank, "index": int(i), "id": str(data.ids[i]), "label": label,
                    "class_name": data.class_names[label], "distance": float(d)})
    return out
