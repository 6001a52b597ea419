"""The library half of ``python -m benchmarks``: encoding, neighbour search, one training epoch.

Everything here runs in the benchmark's own process, on the catalogue the app would serve at
Galaxy10 size (21,785 galaxies). A smaller dataset (the offline sample) is *tiled* up to that size
(:func:`tile_dataset`): its real cutouts repeated in their four rotations -- a rotated galaxy is
still a real galaxy of the same class, and the model places it elsewhere, so the tiles do not pile
up on one latent -- with ids made unique.

    encode_images_per_s      encode_images over the whole tiled catalogue (the app's batches of embed.BATCH)
    encode_speedup_vs_loop   that rate over the rate of encode_images called on one image at a time
    knn_ms_p50 / _p95        Catalogue.query_rows([row], 12): the map page's click (itself excluded)
    knn_invariant_ms_p50     Catalogue.query_images(cutout, 12, invariant=True): its 8 views encoded,
                             then the best distance over the views per galaxy
    knn_1m_ms_p50            NeighbourIndex over 1,000,000 similarity embeddings (64-D, unit length)
                             drawn like the real ones (a random real embedding plus noise of 2 % of
                             their spread, renormalised), one k=12 query at a time: the approximate
                             index (faiss HNSW) with its exact re-rank; the invariant query (8 views)
                             too. The real ones: the galaxy encoder's embeddings of the catalogue, or
                             a seeded untrained encoder's when the encoder has not shipped (the code
                             path, not the encoder's geometry: the report says which)
    knn_1m_recall_at_10      its top 10 against brute force (search.knn) over the same million
    knn_1m_2d_*              (details) the same over the 2-D model latent: the exact KD-tree
    knn_64d_*, knn_pixel_*   (details, full run) the brute-force path: a 64-D latent, raw pixels
    embed_ray_images_per_s   embed_ray.run (``embed --engine ray``) over the dataset file with the galaxy
                             encoder, one actor per core (1 CPU, 1 torch thread each), from submitting the
                             pipeline to the last row received (actors' start-up included); the details
                             give 1 actor, the rate after the first rows arrived, and encode_images in
                             this process over the same galaxies
    epoch_s                  train.fit for one epoch over the whole sample; the epoch's own clock
                             (history[0]["seconds"]: the training steps, not the validation after)

Every call is timed on its own with ``time.perf_counter`` after a few warm-up calls; p50/p95 are in
milliseconds. Other processes on a shared machine move these numbers: compare p50s, not p95s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from galaxy_vae.catalogue import Catalogue, ModelSpace
from galaxy_vae.checkpoints import Checkpoint
from galaxy_vae.data import GalaxyData, stratified_split
from galaxy_vae.embed import decode_latents, encode_images
from galaxy_vae.search import NeighbourIndex, knn, pixel_features

log = logging.getLogger(__name__)

GALAXY10 = 21_785  # Galaxy10 SDSS: the largest catalogue the app serves
MILLION = 1_000_000
K = 12  # neighbours per query, as the map page asks by default
JITTER = 0.02  # noise of a drawn latent, as a fraction of the real latents' spread per axis


# --- timing -------------------------------------------------------------------------------------

def time_calls(fn: Callable, args: Sequence, warmup: int = 3) -> np.ndarray:
    """Milliseconds of ``fn(a)`` for each ``a`` in ``args``, each call timed on its own.

    The first ``warmup`` arguments are called once beforehand, untimed (first calls build caches).
    """
    for a in args[:warmup]:
        fn(a)
    out = np.empty(len(args))
    for i, a in enumerate(args):
        start = time.perf_counter()
        fn(a)
        out[i] = time.perf_counter() - start
    return out * 1e3


def p50(ms: np.ndarray) -> float:
    return float(np.percentile(ms, 50))


def p95(ms: np.ndarray) -> float:
    return float(np.percentile(ms, 95))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- data at Galaxy10 size ----------------------------------------------------------------------

SHIFTS = [(0, 0)] + [(dy, dx) for r in (1, 2, 3) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
                     if max(abs(dy), abs(dx)) == r]  # (dy, dx) pixel shifts, nearest first: 49 in all


def tile_dataset(data: GalaxyData, n: int = GALAXY10) -> GalaxyData:
    """``data`` grown (or cut) to ``n`` galaxies: copy c of each cutout turned c % 4 quarter turns
    and, from the fifth copy on (past 4 x the sample: survey scale), shifted by SHIFTS[c // 4] pixels.

    Rotations keep every class, chirality included (only mirrors swap clockwise and anticlockwise
    spirals); a shift of 1-3 px re-centres the galaxy as a slightly different cutout would (the
    wrapped edge lies in the border the models' 64 px crop drops). Copy c > 0 of galaxy ``id`` gets
    the id ``id#r<r>`` (``id#r<r>s<s>`` when shifted), so ids stay unique.
    """
    m = len(data)
    if n <= m:
        return data.take(np.arange(n))
    copies = -(-n // m)
    assert copies <= 4 * len(SHIFTS), f"{m} galaxies in {4 * len(SHIFTS)} views cannot reach {n}"
    rows = np.arange(n) % m
    copy = np.arange(n) // m
    images = np.empty((n,) + data.images.shape[1:], dtype=np.uint8)
    for c in range(copies):
        at = copy == c
        view = np.rot90(data.images[rows[at]], c % 4, axes=(1, 2))  # (n_c, H, W, 3)
        images[at] = np.roll(view, SHIFTS[c // 4], axis=(1, 2)) if c >= 4 else view
    ids = np.array([str(data.ids[i]) if c == 0 else f"{data.ids[i]}#r{c % 4}" + (f"s{c // 4}" if c >= 4 else "")
                    for i, c in zip(rows, copy)])
    return GalaxyData(images=images, labels=data.labels[rows], class_names=data.class_names, ids=ids,
                      source=f"{data.name} tiled to {n:,} galaxies (rotated and shifted copies of real cutouts)")


def drawn_like(latents: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, d) float32 latents drawn like ``latents`` (a kernel density draw: a random real latent
    plus Gaussian noise of JITTER times the real spread on each axis)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(latents), size=n)
    noise = rng.normal(size=(n, latents.shape[1])) * (JITTER * latents.std(axis=0))
    return (latents[rows] + noise).astype(np.float32)


# --- encoding -----------------------------------------------------------------------------------

def build_catalogue(checkpoint: Checkpoint, data: GalaxyData) -> tuple[Catalogue, dict]:
    """The catalogue the app would build, and ``encode_images_per_s``: one timed pass of
    encode_images over the whole dataset in the app's batches (the catalogue then encodes again)."""
    encode_images(checkpoint.model, data.images[:256])  # untimed: first calls set up the kernels
    start = time.perf_counter()
    encode_images(checkpoint.model, data.images)
    seconds = time.perf_counter() - start
    return Catalogue(data, ModelSpace(checkpoint)), {"encode_images_per_s": len(data) / seconds}


def measure_encoding_loop(checkpoint: Checkpoint, images: np.ndarray, batched_per_s: float) -> dict:
    """One image per encode_images call, as a naive loop would: the rate and the batched speedup."""
    model = checkpoint.model
    ms = time_calls(lambda i: encode_images(model, images[i:i + 1]), list(range(len(images))))
    per_s = 1e3 / ms.mean()
    return {"encode_speedup_vs_loop": batched_per_s / per_s, "encode_loop_images_per_s": per_s}


def measure_threads(checkpoint: Checkpoint, images: np.ndarray, batch: np.ndarray | None = None) -> dict:
    """Single-image encode and decode (what an upload, an invariant query and a slider move cost)
    with torch's default thread count and with one thread; with ``batch``, the batched rate too."""
    model, default = checkpoint.model, torch.get_num_threads()
    latents = encode_images(model, images)  # (n, d): points to decode, one at a time
    out: dict = {"torch_threads_default": default}
    for label, n in ((f"{default}_threads", default), ("1_thread", 1)):
        with torch_threads(n):
            enc = time_calls(lambda i: encode_images(model, images[i:i + 1]), list(range(len(images))))
            dec = time_calls(lambda i: decode_latents(model, latents[i]), list(range(len(latents))))
            out[f"encode_one_ms_p50_{label}"], out[f"encode_one_ms_p95_{label}"] = p50(enc), p95(enc)
            out[f"decode_one_ms_p50_{label}"], out[f"decode_one_ms_p95_{label}"] = p50(dec), p95(dec)
            if batch is not None:
                start = time.perf_counter()
                encode_images(model, batch)
                out[f"encode_images_per_s_{label}"] = len(batch) / (time.perf_counter() - start)
    return out


# --- neighbour search ---------------------------------------------------------------------------

def measure_search(cat: Catalogue, n_queries: int, n_invariant: int, seed: int = 1) -> dict:
    """The map page's queries at the catalogue's size: a click (plain and invariant) on random rows."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(cat), size=n_queries, replace=False)
    clicks = time_calls(lambda r: cat.query_rows([r], K), list(rows))
    bare = time_calls(lambda r: cat.index.query(cat.vectors[r], K), list(rows))
    some = list(rows[:n_invariant])
    invariant = time_calls(lambda r: cat.query_images(cat.data.images[r], K, invariant=True), some)
    views = time_calls(lambda r: cat.embed_views(cat.data.images[r][None]), some)
    return {"knn_ms_p50": p50(clicks), "knn_ms_p95": p95(clicks), "knn_index_only_ms_p50": p50(bare),
            "knn_invariant_ms_p50": p50(invariant), "knn_invariant_ms_p95": p95(invariant),
            "knn_invariant_encode_views_ms_p50": p50(views), "knn_method": cat.index.method}


def measure_upload_search(encoder: Checkpoint, data: GalaxyData, n_queries: int, seed: int = 2) -> dict:
    """What an upload costs under the default similarity: the galaxy encoder embeds the prepared
    cutout and finds its k nearest among every galaxy of ``data`` (the map page's look-up, without
    the picture's decoding and preparation, which the memory tests cover)."""
    cat = Catalogue(data, ModelSpace(encoder))
    rows = np.random.default_rng(seed).choice(len(data), size=n_queries, replace=False)
    ms = time_calls(lambda r: cat.query_images(data.images[r], K), list(rows))
    return {"encoder_upload_search_ms_p50": p50(ms), "encoder_upload_search_ms_p95": p95(ms),
            "encoder_dim": int(cat.vectors.shape[1]), "encoder_rows": len(data)}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def similarity_embeddings(data: GalaxyData, encoder: Checkpoint | None = None, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 64) unit embeddings of ``data`` by the galaxy encoder, or by a seeded untrained
    similarity encoder when ``encoder`` is None; with a note of which."""
    if encoder is None:
        from galaxy_vae.models import build_model

        torch.manual_seed(seed)
        model = build_model("similarity", {"n_classes": 5}).eval()
        return encode_images(model, data.images), f"untrained similarity encoder (seed {seed}): the code path only"
    return encode_images(encoder.model, data.images), f"galaxy encoder {encoder.path.name}"


def _recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(got, exact)]))


def _rss_mb() -> float:
    """Resident memory of this process now (VmRSS), in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def measure_million(vectors: np.ndarray, n_queries: int, n_recall: int, seed: int = 4, method: str | None = None,
                    unit: bool = True, prefix: str = "knn_1m") -> dict:
    """The index the app would build over 1,000,000 vectors drawn like ``vectors``: build time and
    memory, k=12 query p50/p95 (plain, and invariant: 8 views of a query), recall@10 of both against
    brute force over the same million."""
    draw = (lambda n, s: unit_rows(drawn_like(vectors, n, s))) if unit else (lambda n, s: drawn_like(vectors, n, s))
    big = draw(MILLION, seed)
    rss_before = _rss_mb()
    start = time.perf_counter()
    index = NeighbourIndex(big, method=method)
    build_s = time.perf_counter() - start
    out = {f"{prefix}_build_s": build_s, f"{prefix}_method": index.method, f"{prefix}_dim": int(big.shape[1]),
           f"{prefix}_index_rss_mb": _rss_mb() - rss_before}
    if index.savable:
        out[f"{prefix}_index_mb"] = index.ann_bytes() / 2**20
    queries = draw(n_queries, seed + 1)
    ms = time_calls(lambda q: index.query(q, K), list(queries))
    out.update({f"{prefix}_ms_p50": p50(ms), f"{prefix}_ms_p95": p95(ms)})
    check = queries[:n_recall]
    _, exact = knn(check, big, 10, chunk=8)  # independent brute force over all 1M rows
    out[f"{prefix}_recall_at_10"] = _recall(index.query(check, 10).indices, exact)
    # the invariant query: 8 views of each query (here: 8 independent draws near the query)
    views = np.stack([draw(8, seed + 100 + i) for i in range(min(n_recall, 30))])  # (Q, 8, d)
    views[:, 0] = check[:len(views)]
    ms = time_calls(lambda v: index.query_views(v, K), list(views))
    out[f"{prefix}_invariant_ms_p50"] = p50(ms)
    exact_views = np.empty((len(views), 10), dtype=np.int64)
    for q, v in enumerate(views):  # brute force: the best distance over the views of every row
        _, i = knn(v, big, 10, chunk=8)
        d = np.linalg.norm(big[np.unique(i)][None] - v[:, None], axis=2).min(axis=0)
        exact_views[q] = np.unique(i)[np.argsort(d, kind="stable")[:10]]
    got = index.query_views(views, 10).indices
    out[f"{prefix}_invariant_recall_at_10"] = _recall(got, exact_views)
    return out


def measure_other_spaces(data: GalaxyData, n_queries: int, seed: int = 6) -> dict:
    """Exact queries where the index falls back to brute force: a 64-D latent (the seed dense
    autoencoder's width; Gaussian latents at Galaxy10 size) and raw pixels (12,288-D, ``data``)."""
    rng = np.random.default_rng(seed)
    wide = rng.normal(size=(GALAXY10 + n_queries, 64)).astype(np.float32)
    index = NeighbourIndex(wide[:GALAXY10])
    out = {"knn_64d_ms_p50": p50(time_calls(lambda q: index.query(q, K), list(wide[GALAXY10:])))}
    views = wide[GALAXY10:GALAXY10 + 8]
    out["knn_64d_invariant_search_ms_p50"] = p50(time_calls(lambda _: index.query_views(views, K), [0] * n_queries))
    feats = pixel_features(data.images)  # (N, 12288) float32
    index = NeighbourIndex(feats)
    rows = list(rng.choice(len(data), size=min(30, len(data)), replace=False))
    out["knn_pixel_ms_p50"] = p50(time_calls(lambda r: index.query(feats[r], K), rows, warmup=2))
    out["knn_pixel_rows"] = len(data)
    return out


# --- training -----------------------------------------------------------------------------------

def measure_epoch(checkpoint: Checkpoint, data: GalaxyData, seed: int = 0) -> dict:
    """One epoch of the improved VAE (``checkpoint``'s architecture when it is one) over all of
    ``data``, through train.fit. A few percent are held out only because fit validates."""
    from galaxy_vae.models import build_model, model_name
    from galaxy_vae.train import default_config, fit

    name = model_name(checkpoint.model)
    config = checkpoint.meta.get("config") if name == "galaxy_vae" else {"n_classes": len(data.class_names)}
    torch.manual_seed(seed)
    model = build_model("galaxy_vae", config)
    _, val = stratified_split(data.labels, 0.04, seed)
    result = fit(model, data, data.take(val), default_config("galaxy_vae", epochs=1, seed=seed), progress=False)
    return {"epoch_s": result.history[0]["seconds"], "epoch_images": len(data),
            "epoch_model": "galaxy_vae" + ("" if name == "galaxy_vae" else " (default config)")}


# --- the ray engine -------------------------------------------------------------------------------

def measure_ray_embedding(path, encoder_path, workers: Sequence[int] = (1, 2)) -> dict:
    """``embed --engine ray``'s throughput over the dataset file ``path`` with the galaxy encoder
    on a local Ray instance (every core), for each number of ``workers`` (1 CPU each), next to the
    single-process path (encode_images, torch's default threads) over the same galaxies."""
    import os
    import tempfile
    from pathlib import Path

    from galaxy_vae import embed_ray
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.hdf5 import open_for_search

    ray = embed_ray.require_ray()
    started_here = not ray.is_initialized()
    embed_ray.start_ray(num_cpus=os.cpu_count())
    out: dict = {}
    try:
        source = embed_ray.hdf5_source(path)
        with tempfile.TemporaryDirectory(prefix="galaxy_vae_ray_") as tmp:
            for w in workers:
                result = embed_ray.run(source, [Path(encoder_path)], Path(tmp) / f"w{w}", workers=w, progress=False)
                rate = result.n / result.seconds
                steady = (result.n - result.first_rows) / max(result.seconds - result.first_seconds, 1e-9)
                out.update({f"embed_ray_{w}_workers_images_per_s": rate,
                            f"embed_ray_{w}_workers_after_first_rows_images_per_s": steady,
                            f"embed_ray_{w}_workers_first_rows_s": result.first_seconds})
    finally:
        if started_here:
            ray.shutdown()
    images = open_for_search(path).images
    model = load_checkpoint(encoder_path).model
    encode_images(model, images[:256])  # warm-up
    start = time.perf_counter()
    encode_images(model, images)
    out["embed_single_process_images_per_s"] = len(images) / (time.perf_counter() - start)
    out["embed_ray_images"] = len(images)
    out["embed_ray_images_per_s"] = out[f"embed_ray_{max(workers)}_workers_images_per_s"]
    return out
