"""The map at survey scale: ``python -m benchmarks.map_scale [--galaxies 240000] [--clicks 5]``.

The sample tiled to 240,000 galaxies (Galaxy Zoo 2's size; :func:`benchmarks.compute.tile_dataset`:
real cutouts in four rotations and small shifts) is written to a temporary data folder with its
persisted catalogue (what ``python -m galaxy_vae embed`` writes), then served by a local
`streamlit run` (127.0.0.1) and opened in headless chromium, as a user opens it:

    map_240k_first_visit_s  the first visit to /latent_map on the fresh server: the catalogue read
                            from its store, the map built, sent and drawn (details)
    map_240k_first_paint_s  a new browser session opening /latent_map on the running server:
                            navigation -> the map drawn with its galaxies and the script idle (p50);
                            a fresh profile each time, so chromium loads and compiles Streamlit's
                            and Plotly's code anew (``first_paint_returning_s`` in the details: a
                            second tab of that browser, its cache warm, as a returning user)
    map_240k_click_s        a click on a galaxy of the map (each time on a freshly opened page, the
                            i-th most isolated clickable point) -> its neighbour gallery on the page
                            and the script idle (p50); the gallery's query must be the galaxy
                            clicked, or the run fails
    map_240k_rss_mb         the server's peak resident memory (VmHWM) after all of it

``--folder DIR`` keeps (or reuses) the tiled file and its catalogue in DIR instead of a temporary
folder: embedding 240,000 galaxies with every shipped model takes minutes. ``--screenshot PNG``
saves the whole page after the last click. data/ is never written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from benchmarks.compute import tile_dataset
from benchmarks.pages import TILED_NAME, persist_catalogues, write_tiled_folder
from galaxy_vae.hdf5 import open_dataset
from galaxy_vae.paths import DATA_ENV, default_dataset
from tests import browser

SURVEY = 240_000  # Galaxy Zoo 2: about 240,000 galaxies
TIMEOUT_S = 600


def prepare_folder(folder: Path, n: int, checkpoint: Path) -> dict:
    """The sample tiled to ``n`` galaxies in ``folder`` with its persisted catalogue; reuses a
    tiled file of that size already there. Returns what it took (seconds)."""
    out = {}
    path = folder / TILED_NAME
    if not path.is_file() or len(open_dataset(path)) != n:
        start = time.perf_counter()
        write_tiled_folder(tile_dataset(open_dataset(default_dataset()), n), folder)
        out["tile_and_write_s"] = time.perf_counter() - start
    out["embed_catalogue_s"] = persist_catalogues(path, checkpoint)  # reads the store when it is there
    return out


def _query_id(page) -> str:
    """The id in the query image's caption ("<id> · <class> ..."), the first caption on the page."""
    captions = browser.image_captions(page)
    return captions[0].split()[0].replace("\\", "") if captions else ""


def measure(folder: Path, clicks: int = 5, paints: int = 3, screenshot: Path | None = None) -> dict:
    """First visit, first paint and click -> gallery at the size of ``folder``'s dataset, and the
    server's peak RSS (see the module docstring)."""
    ids = open_dataset(folder / TILED_NAME).ids
    out: dict = {"galaxies": len(ids)}
    with browser.chromium() as b, browser.running_app(env={DATA_ENV: str(folder)}, timeout_s=300) as app:
        start = time.perf_counter()
        page = browser.open_page(b, app.url + "/latent_map", timeout_s=TIMEOUT_S)
        browser.wait_for_map(page, TIMEOUT_S)
        out["map_first_visit_s"] = time.perf_counter() - start
        out["launch_to_map_s"] = time.perf_counter() - app.started
        page.context.close()
        paint_s, again_s = [], []
        for _ in range(paints):
            start = time.perf_counter()
            page = browser.open_page(b, app.url + "/latent_map", timeout_s=TIMEOUT_S)
            browser.wait_for_map(page, TIMEOUT_S)
            paint_s.append(time.perf_counter() - start)
            again = page.context.new_page()  # a second tab of the same browser: its cache holds the app's code
            again.set_default_timeout(TIMEOUT_S * 1e3)
            start = time.perf_counter()
            again.goto(app.url + "/latent_map", wait_until="domcontentloaded")
            browser.wait_for_map(again, TIMEOUT_S)
            again_s.append(time.perf_counter() - start)
            page.context.close()
        runs = []
        for i in range(clicks):
            page = browser.open_page(b, app.url + "/latent_map", timeout_s=TIMEOUT_S)
            browser.wait_for_map(page, TIMEOUT_S)
            points = [p for p in browser.galaxy_points(page) if p.clickable]
            target = sorted(points, key=lambda p: -p.gap)[i]  # the i-th most isolated: one galaxy under the cursor
            start = time.perf_counter()
            reported = browser.click_map(page, target.x, target.y)
            browser.wait_for_gallery(page, TIMEOUT_S)
            seconds = time.perf_counter() - start
            shown = _query_id(page)
            if shown != str(ids[target.row]):
                raise RuntimeError(f"clicked row {target.row} ({ids[target.row]}; Plotly reported {reported}) "
                                   f"but the gallery's query is {shown!r}")
            runs.append({"row": target.row, "gap_px": round(target.gap, 1), "seconds": seconds})
            if screenshot is not None and i == clicks - 1:
                browser.screenshot(page, screenshot)
            page.context.close()
        out["rss_mb"] = app.peak_rss_mb()
    out.update(first_paint_s=statistics.median(paint_s), first_paint_runs_s=paint_s,
               first_paint_returning_s=statistics.median(again_s), first_paint_returning_runs_s=again_s,
               click_s=statistics.median(r["seconds"] for r in runs), clicks=runs)
    return out


def run(n: int = SURVEY, clicks: int = 5, paints: int = 3, folder: Path | None = None,
        screenshot: Path | None = None, checkpoint: Path | None = None) -> dict:
    """Prepare the tiled folder (temporary unless ``folder``) and measure; keys as bench reports them."""
    with (nullcontext(str(folder)) if folder else tempfile.TemporaryDirectory(prefix="galaxy_vae_map_")) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        from benchmarks.bench import app_default_checkpoint  # (bench imports this module)

        prepared = prepare_folder(Path(tmp), n, checkpoint or app_default_checkpoint())
        found = measure(Path(tmp), clicks, paints, screenshot)
    return {"map_240k_first_paint_s": found.pop("first_paint_s"), "map_240k_click_s": found.pop("click_s"),
            "map_240k_rss_mb": found.pop("rss_mb"), **{f"map_240k_{k}": v for k, v in {**prepared, **found}.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=SURVEY, help="catalogue size (the sample tiled)")
    parser.add_argument("--clicks", type=int, default=5, help="galaxies to click (1-20)")
    parser.add_argument("--paints", type=int, default=3, help="fresh tabs to time the first paint in")
    parser.add_argument("--folder", type=Path, default=None, help="keep or reuse the tiled data here")
    parser.add_argument("--screenshot", type=Path, default=None, help="whole page after the last click (PNG)")
    args = parser.parse_args(argv)
    browser.check_browser()
    report = run(args.galaxies, min(max(args.clicks, 1), 20), max(args.paints, 1), args.folder, args.screenshot)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
