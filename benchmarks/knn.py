"""Measure neighbour search and map figures: the numbers behind the knn_* benchmark keys.

    .venv/bin/python benchmarks/knn.py [--quick] [--json] [--latents FILE.npy]

Every query is timed on its own (one galaxy, k=12, as the page asks), and p50/p95 are reported
in milliseconds. Latents are drawn like a trained 2-D VAE's (a Gaussian mixture with the
sample's class proportions), or tiled from real latents with ``--latents`` (an (N, 2) .npy),
jittered so tiles do not coincide. Timings on a shared 2-core machine are noisy: compare p50s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from galaxy_vae.search import NeighbourIndex, knn, pixel_features

GALAXY10 = 21_785  # Galaxy10 SDSS size, the app's largest catalogue
MILLION = 1_000_000
K = 12
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "gz1_sample.h5"
# class shares of the offline sample (Elliptical, Spiral CW/ACW, Edge-on, Don't know, Merger)
SHARES = np.array([4645, 414, 436, 998, 56, 115]) / 6664


def mixture_latents(n: int, dim: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 latents from a 6-component Gaussian mixture, and their component labels."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=1.2, size=(len(SHARES), dim))
    scales = np.array([0.6, 0.35, 0.35, 0.45, 0.8, 0.7])
    labels = rng.choice(len(SHARES), size=n, p=SHARES)
    z = centres[labels] + rng.normal(size=(n, dim)) * scales[labels, None]
    return z.astype(np.float32), labels


def tiled_latents(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Real (M, d) latents repeated to n rows, each copy jittered by 2% of the spread."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(real), size=n)
    return (real[rows] + rng.normal(size=(n, real.shape[1])) * 0.02 * real.std(axis=0)).astype(np.float32)


def time_calls(fn, args: list, warmup: int = 5) -> tuple[float, float]:
    """p50, p95 in ms of fn(a) over each a in args, each call timed on its own."""
    for a in args[:warmup]:
        fn(a)
    times = []
    for a in args:
        start = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - start)
    p50, p95 = np.percentile(times, [50, 95]) * 1e3
    return float(p50), float(p95)


def views_like(z: np.ndarray, rng: np.random.Generator, spread: float = 0.15) -> np.ndarray:
    """Stand-ins for the latents of the 8 dihedral views of a galaxy: close to its own latent."""
    return z[None, :] + rng.normal(size=(8, z.shape[0])) * spread


def measure_knn(quick: bool = False, latents: np.ndarray | None = None) -> dict:
    """The knn_* numbers: exact 2-D queries at Galaxy10 size, invariant search, 1M with recall."""
    n_q = 200 if quick else 1000
    rng = np.random.default_rng(1)
    base = tiled_latents(latents, GALAXY10) if latents is not None else mixture_latents(GALAXY10)[0]
    queries = mixture_latents(n_q, seed=2)[0] if latents is None else tiled_latents(latents, n_q, seed=2)
    out: dict = {}
    start = time.perf_counter()
    index = NeighbourIndex(base)
    out["knn_build_ms"] = (time.perf_counter() - start) * 1e3
    out["knn_method"] = index.method
    out["knn_ms_p50"], out["knn_ms_p95"] = time_calls(lambda q: index.query(q, K), list(queries))
    view_sets = [views_like(q, rng) for q in queries]
    out["knn_invariant_search_ms_p50"], out["knn_invariant_search_ms_p95"] = time_calls(
        lambda v: index.query_views(v, K), view_sets)

    ae = mixture_latents(GALAXY10, dim=64)[0]  # the dense AE's 64-D latent
    ae_index = NeighbourIndex(ae)
    ae_q = list(mixture_latents(n_q // 4, dim=64, seed=3)[0])
    out["knn_64d_ms_p50"], _ = time_calls(lambda q: ae_index.query(q, K), ae_q)
    out["knn_64d_invariant_ms_p50"], _ = time_calls(lambda q: ae_index.query_views(views_like(q, rng), K), ae_q)

    big = mixture_latents(MILLION, seed=4)[0] if latents is None else tiled_latents(latents, MILLION, seed=4)
    start = time.perf_counter()
    big_index = NeighbourIndex(big)
    out["knn_1m_build_s"] = time.perf_counter() - start
    out["knn_1m_method"] = big_index.method
    big_q = mixture_latents(n_q, seed=5)[0] if latents is None else tiled_latents(latents, n_q, seed=5)
    out["knn_1m_ms_p50"], out["knn_1m_ms_p95"] = time_calls(lambda q: big_index.query(q, K), list(big_q))
    check = big_q[:50]  # recall against an independent brute-force pass over all 1M rows
    _, exact = knn(check, big, 10, chunk=4)
    got = big_index.query(check, 10).indices
    out["knn_1m_recall_at_10"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact)]))
    return out


def measure_pixels(quick: bool = False) -> dict:
    """Pixel-space search over the real sample (12,288-D), if the sample is built."""
    if not SAMPLE.is_file():
        return {}
    from galaxy_vae.data import open_dataset

    data = open_dataset(SAMPLE)
    feats = pixel_features(data.images)
    index = NeighbourIndex(feats)
    rng = np.random.default_rng(6)
    rows = rng.choice(len(data), size=10 if quick else 30, replace=False)
    p50, _ = time_calls(lambda r: index.query(feats[r], K), list(rows), warmup=2)
    inv, _ = time_calls(lambda r: index.query_views(np.stack([feats[r]] * 8), K), list(rows[:10]), warmup=2)
    return {"knn_pixel_ms_p50": p50, "knn_pixel_invariant_ms_p50": inv, "knn_pixel_rows": len(data)}


def measure_figures(quick: bool = False) -> dict:
    """Latent map at Galaxy10 size: build, fig.to_json(), and the path st.plotly_chart takes."""
    import plotly.io as pio
    import plotly.tools
    import streamlit  # noqa: F401  (registers its Plotly template as the default, as in the app)

    from galaxy_vae import figures

    z, labels = mixture_latents(GALAXY10)
    names = [f"class {i}" for i in range(len(SHARES))]
    ids = np.array([str(587722981736000000 + 7919 * i) for i in range(GALAXY10)])  # objID-like
    reps = 7 if quick else 21

    def streamlit_path(fig):
        # what st.plotly_chart does server-side: to_dict, to_json without validation, hash the spec
        spec = pio.to_json(plotly.tools.return_figure_from_figure_or_data(fig, True), validate=False)
        return hashlib.md5(spec.encode()).hexdigest()

    def build():
        return figures.latent_map(z, labels, names, ids, query=z[0], neighbours=np.arange(1, 13))

    fig = build()
    out = {"map_json_mb": len(fig.to_json()) / 1e6}
    out["map_build_ms_p50"], _ = time_calls(lambda _: build(), [None] * reps, warmup=2)
    out["map_to_json_ms_p50"], _ = time_calls(lambda _: fig.to_json(), [None] * reps, warmup=2)
    out["map_build_and_send_ms_p50"], _ = time_calls(lambda _: streamlit_path(build()), [None] * reps, warmup=2)
    out["small_map_build_and_send_ms_p50"], _ = time_calls(
        lambda _: streamlit_path(figures.small_latent_map(z, labels, names, z[0], nearest=z[1])),
        [None] * reps, warmup=2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries, no pixel-space section")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--latents", type=Path, help="(N, 2) .npy of real latents to tile")
    args = parser.parse_args()
    real = np.load(args.latents) if args.latents else None
    results = measure_knn(args.quick, real)
    if not args.quick:
        results.update(measure_pixels(args.quick))
    results.update(measure_figures(args.quick))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, value in results.items():
        print(f"{key:36s} {value:.4g}" if isinstance(value, float) else f"{key:36s} {value}")


if __name__ == "__main__":
    main()
