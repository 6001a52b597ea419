"""``python -m benchmarks``: the performance table, measured on the machine it runs on.

    python -m benchmarks [--quick] [--json] [--data FILE] [--checkpoint C]

One run measures every figure the issues set a goal for, at Galaxy10 size (21,785 galaxies):

    slider_fragment_ms_p50, full_rerun_ms_p50   pages: every script run clocked (benchmarks.timing)
    generator_rerun_ms_p50, slider_paint_ms_p50 pages (browser run): a whole generator page run, and a
                                                z1 key press -> the new image painted; fragment_speedup
                                                is the generator page rerun / the fragment
    cold_start_s, rss_mb                        pages: the app process (cold start: full run only), its
                                                catalogue persisted first (embed); cold_start_sample_s
                                                the same on the sample itself
    encode_images_per_s, encode_speedup_vs_loop compute, in this process
    knn_ms_p50/_p95, knn_invariant_ms_p50       compute
    knn_1m_ms_p50, knn_1m_recall_at_10          compute: 1M similarity embeddings, faiss HNSW + exact re-rank
    epoch_s                                     compute (full run only)
    embed_ray_images_per_s                      compute: embed --engine ray on the dataset file, a local Ray
                                                instance, one actor per core (full run only; needs ray)
    map_240k_first_paint_s, map_240k_click_s,   map_scale (full run only): the sample tiled to 240,000,
    map_240k_rss_mb                             embedded, served, opened and clicked in chromium

The pages run first, as the app runs them (``pages`` says how each is clocked: a real
`streamlit run` driven by headless chromium in a full run, AppTest with --quick or without a
browser). They report the torch thread count the app's script runs use, and the encoding and
search figures are then taken with that count, so they describe the app; the details give
single-image encode/decode and batched encoding with torch's default count as well, and the
training epoch runs with torch's default count (and again with one thread, in the details).

A dataset smaller than Galaxy10 (the offline sample) is tiled up to 21,785 real cutouts
(``compute.tile_dataset``); the report says so. The app is pointed at a temporary folder
holding that tiled file, never at data/. The model is the app's default checkpoint
(checkpoints/galaxy_vae.safetensors, else the first in checkpoints/, as the sidebar picks) unless
``--checkpoint`` names another; the pages always run the app's default.

A figure that cannot be measured (a --quick skip, no browser) is listed under "skipped" with the
reason, never given a number. "goals" says, for each goal of the issues, whether it is met.
Other processes on a shared machine move every timing; the machine block records the load.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks import compute, map_scale, pages
from galaxy_vae.checkpoints import list_checkpoints, load_checkpoint
from galaxy_vae.errors import CheckpointError
from galaxy_vae.hdf5 import open_for_search
from galaxy_vae.paths import checkpoint_dir, default_checkpoint, default_dataset, encoder_checkpoint

log = logging.getLogger(__name__)

# (key, unit, what) in table order: the keys of the table
KEYS = (
    ("encode_images_per_s", "img/s", "batched encoding, default model"),
    ("encode_speedup_vs_loop", "x", "batched vs one image per call"),
    ("knn_ms_p50", "ms", "exact k=12 query (a map click)"),
    ("knn_ms_p95", "ms", "exact k=12 query, 95th percentile"),
    ("knn_invariant_ms_p50", "ms", "rotation/flip-invariant query, 8 views encoded"),
    ("encoder_upload_search_ms_p50", "ms", "an upload's k=12 search under the galaxy encoder, encoding included"),
    ("knn_1m_ms_p50", "ms", "k=12 query over 1,000,000 64-D similarity embeddings"),
    ("knn_1m_recall_at_10", "", "recall@10 of that index vs brute force"),
    ("slider_fragment_ms_p50", "ms", "generator slider: fragment server time"),
    ("generator_rerun_ms_p50", "ms", "generator page rerun (what the fragment replaces), server time"),
    ("slider_paint_ms_p50", "ms", "generator slider key press -> new image painted in chromium"),
    ("full_rerun_ms_p50", "ms", "map page rerun, server time"),
    ("epoch_s", "s", "one training epoch of the improved VAE"),
    ("cold_start_s", "s", "streamlit run -> map rendered in chromium, 21,785 galaxies, catalogue persisted"),
    ("cold_start_sample_s", "s", "the same on the 6,664-galaxy sample"),
    ("rss_mb", "MiB", "peak memory of the app process, 21,785 galaxies"),
    ("embed_ray_images_per_s", "img/s", "embed --engine ray, galaxy encoder, a Ray actor per core, start-up included"),
    ("map_240k_first_paint_s", "s", "a new tab -> the map drawn in chromium, 240,000 galaxies"),
    ("map_240k_click_s", "s", "a click on a galaxy -> its neighbour gallery, 240,000 galaxies"),
    ("map_240k_rss_mb", "MiB", "peak memory of the app process serving that map"),
)
# (key, comparison, target): the goals of issues 3-6
GOALS = (
    ("slider_fragment_ms_p50", "<=", 20), ("fragment_speedup", ">=", 10), ("knn_ms_p50", "<=", 1),
    ("knn_invariant_ms_p50", "<=", 15), ("full_rerun_ms_p50", "<=", 300), ("encode_images_per_s", ">=", 5000),
    ("epoch_s", "<=", 10), ("knn_1m_ms_p50", "<=", 2), ("knn_1m_recall_at_10", ">=", 0.95),
    ("encoder_upload_search_ms_p50", "<=", 15), ("cold_start_sample_s", "<=", 3), ("rss_mb", "<=", 500),
    ("slider_paint_ms_p50", "<=", 60),
    ("map_240k_first_paint_s", "<=", 3), ("map_240k_click_s", "<=", 1), ("map_240k_rss_mb", "<=", 1536),
)
MAP_240K = ("map_240k_first_paint_s", "map_240k_click_s", "map_240k_rss_mb")  # benchmarks.map_scale (full run)
# how many timed calls of each kind: --quick keeps the whole run under ~90 s on two busy cores
QUICK = dict(queries=300, invariant=40, recall=30, loop=100, threads=30, reruns=5, moves=10)
FULL = dict(queries=2000, invariant=200, recall=100, loop=500, threads=100, reruns=10, moves=20)


def machine_info() -> dict:
    """What the numbers were taken on: CPU, cores, thread counts, versions, load."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__,
            "streamlit": importlib.metadata.version("streamlit"), "system": platform.platform(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2)}


def app_default_checkpoint() -> Path:
    """The checkpoint the app's sidebar starts with: the default when it exists, else the first."""
    if default_checkpoint().is_file():
        return default_checkpoint()
    found = list_checkpoints()
    if not found:
        raise CheckpointError("No checkpoint to benchmark", found="none",
                              expected=f"{default_checkpoint()} or another in {checkpoint_dir()}",
                              fix="Train one (see checkpoints/README.md) or pass --checkpoint FILE.")
    return found[0]


def check_goals(results: dict) -> dict:
    """{"<key> <op> <target>": {"value", "met"}}; met is None when the figure was skipped."""
    out = {}
    for key, op, target in GOALS:
        value = results.get(key)
        met = None if value is None else bool(value <= target if op == "<=" else value >= target)
        out[f"{key} {op} {target:g}"] = {"value": value, "met": met}
    return out


def run_bench(quick: bool = False, data_path: str | Path | None = None, checkpoint_path: str | Path | None = None,
              progress: Callable[[str], None] = log.info) -> dict:
    """Measure everything; returns the report (see the module docstring for its keys)."""
    n, started, machine = (QUICK if quick else FULL), time.perf_counter(), machine_info()
    app_ckpt = app_default_checkpoint()
    ckpt = load_checkpoint(checkpoint_path or app_ckpt)
    data = open_for_search(data_path or default_dataset())
    tiled = compute.tile_dataset(data) if len(data) < compute.GALAXY10 else data
    results: dict = {}
    details: dict = {"checkpoint": str(ckpt.path), "app_checkpoint": str(app_ckpt),
                     "checkpoint_trained": bool(ckpt.meta.get("history")) and not ckpt.path.name.startswith("_")}
    skipped: dict = {}
    if quick:
        skipped.update(epoch_s="skipped with --quick", cold_start_s="skipped with --quick",
                       cold_start_sample_s="skipped with --quick", embed_ray_images_per_s="skipped with --quick",
                       **{key: "skipped with --quick" for key in MAP_240K})

    with tempfile.TemporaryDirectory(prefix="galaxy_vae_bench_") as tmp:
        folder = Path(tmp)
        pages.write_tiled_folder(tiled, folder)
        measured = None
        progress("writing the tiled file's persisted catalogue (what `embed` does before the app starts)")
        details["embed_catalogue_s"] = pages.persist_catalogues(folder / pages.TILED_NAME, app_ckpt)
        if not quick:
            progress("starting `streamlit run` and headless chromium on the tiled catalogue")
            try:
                measured = pages.measure_pages_server(folder, n["reruns"], n["moves"])
            except Exception as exc:
                skipped["cold_start_s"] = f"no browser run: {exc}".splitlines()[0][:300]
            if data.path is not None and "cold_start_s" not in skipped:
                progress("cold start on the sample itself, its catalogue persisted")
                with tempfile.TemporaryDirectory(prefix="galaxy_vae_bench_sample_") as sample_tmp:
                    found = pages.measure_sample_cold_start(data.path, app_ckpt, Path(sample_tmp))
                results["cold_start_sample_s"] = found.pop("cold_start_sample_s")
                details.update(found)
        progress("running the map and generator pages under AppTest (child process)")
        apptest = pages.measure_pages_apptest(folder, n["reruns"], n["moves"])
        measured = measured or apptest
        if measured is not apptest:
            details["apptest"] = apptest
    threads = apptest.pop("app_torch_threads")
    for key in ("slider_fragment_ms_p50", "generator_rerun_ms_p50", "slider_paint_ms_p50", "full_rerun_ms_p50",
                "rss_mb", "cold_start_s"):
        if key in measured:
            results[key] = measured.pop(key)
    if "generator_rerun_ms_p50" not in results:  # AppTest reruns the whole generator page on every move
        results["generator_rerun_ms_p50"] = apptest["generator_page_rerun_ms_p50"]
    if "slider_paint_ms_p50" not in results:
        skipped["slider_paint_ms_p50"] = "a paint in chromium: needs the browser run (a full run, chromium present)"
    if "slider_fragment_ms_p50" in results:  # what the fragment replaces: a run of its own page
        base = results.get("generator_rerun_ms_p50", results["full_rerun_ms_p50"])
        results["fragment_speedup"] = base / results["slider_fragment_ms_p50"]
        details["fragment_speedup_vs_map_rerun"] = results["full_rerun_ms_p50"] / results["slider_fragment_ms_p50"]
    else:
        skipped["slider_fragment_ms_p50"] = "AppTest cannot rerun a fragment on its own: needs the browser run"
    details.update({f"pages_{k}": v for k, v in measured.items()})

    # the model and search figures as the app runs them: with the torch thread count of its pages
    details["app_torch_threads"] = threads
    with compute.torch_threads(threads):
        progress(f"encoding {len(tiled):,} galaxies with {ckpt.path.name} ({threads} torch thread(s), as the app)")
        cat, enc = compute.build_catalogue(ckpt, tiled)
        results.update(enc)
        loop = compute.measure_encoding_loop(ckpt, tiled.images[:n["loop"]], enc["encode_images_per_s"])
        results["encode_speedup_vs_loop"] = loop.pop("encode_speedup_vs_loop")
        details.update(loop)
        progress("timing neighbour queries")
        found = compute.measure_search(cat, n["queries"], n["invariant"])
        results.update({k: found.pop(k) for k in ("knn_ms_p50", "knn_ms_p95", "knn_invariant_ms_p50")})
        details.update(found)
        encoder = encoder_checkpoint()
        if encoder:
            progress(f"timing an upload's search under the galaxy encoder over {len(tiled):,} galaxies")
            found = compute.measure_upload_search(load_checkpoint(encoder), tiled, n["queries"])
            results["encoder_upload_search_ms_p50"] = found.pop("encoder_upload_search_ms_p50")
            details.update(found)
        else:
            skipped["encoder_upload_search_ms_p50"] = "no similarity.safetensors in the checkpoints folder"
    encoder = encoder_checkpoint()
    progress("embedding the catalogue with the similarity encoder" + ("" if encoder else " (untrained stand-in)"))
    with compute.torch_threads(threads):
        embeddings, details["knn_1m_embedding"] = compute.similarity_embeddings(
            tiled, load_checkpoint(encoder) if encoder else None)
    progress("building and querying an index over 1,000,000 similarity embeddings")
    million = compute.measure_million(embeddings, n["queries"], n["recall"])
    results.update({k: million.pop(k) for k in ("knn_1m_ms_p50", "knn_1m_recall_at_10")})
    details.update(million)
    if not quick:
        progress("... and over 1,000,000 2-D latents (the exact KD-tree)")
        details.update(compute.measure_million(cat.vectors, n["queries"], n["recall"], unit=False, prefix="knn_1m_2d"))
    if not quick:
        progress("timing brute-force queries: a 64-D latent and raw pixels")
        details.update(compute.measure_other_spaces(data, n["invariant"]))
    # last: torch's default thread count leaves OpenMP workers behind that would slow what follows
    progress("timing single-image encode/decode with torch's default threads and with one")
    details.update(compute.measure_threads(ckpt, tiled.images[:n["threads"]],
                                                 batch=None if quick else tiled.images[:4096]))
    del cat, tiled
    if not quick:
        found, reason = ray_embedding(data, encoder_checkpoint(), progress)
        if found:
            results["embed_ray_images_per_s"] = found.pop("embed_ray_images_per_s")
            details.update(found)
        else:
            skipped["embed_ray_images_per_s"] = reason

    if not quick:
        progress(f"training the improved VAE for one epoch over {len(data):,} galaxies (torch's default threads)")
        found = compute.measure_epoch(ckpt, data)
        results["epoch_s"] = found.pop("epoch_s")
        details.update(found)
        progress("... and again with one torch thread")
        with compute.torch_threads(1):
            details["epoch_s_1_thread"] = compute.measure_epoch(ckpt, data)["epoch_s"]

    if not quick:
        progress(f"the map at {map_scale.SURVEY:,} galaxies: tiled, embedded, opened and clicked in chromium")
        try:
            found = map_scale.run(checkpoint=app_ckpt)
        except Exception as exc:  # no browser, or the run failed: say so, give no number
            skipped.update({key: f"no map run: {exc}".splitlines()[0][:300] for key in MAP_240K})
        else:
            results.update({key: found.pop(key) for key in MAP_240K})
            details.update(found)

    ordered = {key: results[key] for key, _, _ in KEYS if key in results}
    machine["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return {**ordered, "fragment_speedup": results.get("fragment_speedup"), "skipped": skipped,
            "goals": check_goals(results), "machine": machine,
            "dataset": describe_dataset(data), "details": details, "quick": quick,
            "seconds": time.perf_counter() - started}


def ray_embedding(data, encoder: Path | None, progress: Callable[[str], None]) -> tuple[dict | None, str]:
    """compute.measure_ray_embedding on the dataset file, or (None, why it cannot be measured)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return None, "ray is not installed (pip install galaxy_vae[scale])"
    if encoder is None or data.path is None:
        return None, "needs similarity.safetensors in the checkpoints folder and a dataset file"
    progress(f"embedding {len(data):,} galaxies on a local Ray instance (embed --engine ray), 1 and "
             f"{os.cpu_count()} actor(s)")
    return compute.measure_ray_embedding(data.path, encoder, workers=sorted({1, os.cpu_count() or 1})), ""


def describe_dataset(data) -> dict:
    """What the figures were measured on, and whether it was tiled up to Galaxy10 size."""
    tiled = len(data) < compute.GALAXY10
    note = (f"tiled sample: the {len(data):,} real cutouts of {data.name} in four rotations, cut to "
            f"{compute.GALAXY10:,} (Galaxy10 size)") if tiled else f"{data.name} as it is"
    return {"file": str(data.path or data.name), "galaxies_in_file": len(data),
            "galaxies": max(len(data), compute.GALAXY10), "tiled": tiled, "note": note}


def _fmt(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def format_table(report: dict) -> str:
    """The report as a plain-text table: figures with their goals, then what was skipped, where."""
    goals = {g.split()[0]: (g.split(" ", 1)[1], v["met"]) for g, v in report["goals"].items()}
    lines = [f"{'figure':<24} {'value':>10}  {'unit':<5}  {'goal':<10} {'':<6} what", "-" * 100]
    for key, unit, what in (*KEYS, ("fragment_speedup", "x", "generator page rerun / slider fragment")):
        goal, met = goals.get(key, ("", None))
        value = report.get(key)
        shown = _fmt(value) if value is not None else "skipped"
        verdict = "" if value is None or key not in goals else ("met" if met else "MISSED")
        lines.append(f"{key:<24} {shown:>10}  {unit:<5}  {goal:<10} {verdict:<6} {what}")
    for key, reason in report["skipped"].items():
        lines.append(f"skipped {key}: {reason}")
    m, d = report["machine"], report["dataset"]
    lines += ["", f"data: {d['note']}",
              f"model: {report['details']['checkpoint']} (pages: {report['details']['app_checkpoint']})"
              + ("" if report["details"]["checkpoint_trained"] else " -- untrained stand-in"),
              f"machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), torch {m['torch']} with "
              f"{m['torch_threads']} threads, Python {m['python']}, streamlit {m['streamlit']}; load average "
              f"{m['load_average_1m_at_start']} -> {m['load_average_1m_at_end']} (shared machine: timings are noisy)",
              f"pages: {report['details']['pages_driver']}; encoding and search with "
              f"{report['details']['app_torch_threads']} torch thread(s), as the app's pages run them",
              f"{'quick' if report['quick'] else 'full'} run in {report['seconds']:.0f} s; details with --json"]
    return "\n".join(lines)
