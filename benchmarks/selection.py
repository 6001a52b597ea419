"""A box drawn on the map at Galaxy10 size: ``python -m benchmarks.selection [--boxes 5]``.

The sample tiled to 21,785 galaxies (:func:`benchmarks.compute.tile_dataset`) is served from a
temporary data folder by a local `streamlit run` (127.0.0.1); headless chromium opens the latent
map, picks the toolbar's box select and drags a rectangle, as a user does. Timed: mouse released
-> the selection's heading, its first gallery page (24 images) on the page and the script idle.
Each box is drawn on a freshly loaded map (the previous selection cleared), over a different part
of it, so each is a new selection. Reported: per box the count selected and the seconds; p50 and max.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.compute import GALAXY10, tile_dataset
from benchmarks.pages import write_tiled_folder
from galaxy_vae.hdf5 import open_dataset
from galaxy_vae.paths import DATA_ENV, default_dataset
from tests import browser

TIMEOUT_S = 300
GALLERY_JS = "() => document.querySelectorAll('[data-testid=\"stImageCaption\"]').length >= 24"


def time_boxes(url: str, b, boxes: int) -> list[dict]:
    """Draw ``boxes`` rectangles on fresh map pages; what each selected and how long it took."""
    out = []
    for i in range(boxes):
        page = browser.open_page(b, url + "/latent_map", timeout_s=TIMEOUT_S)
        browser.wait_for_map(page, TIMEOUT_S)
        points = browser.galaxy_points(page)
        xs, ys = sorted(p.x for p in points), sorted(p.y for p in points)
        lo, hi = 0.1 + 0.15 * (i % 4), 0.4 + 0.15 * (i % 4)  # a different third of the map each time
        x0, x1 = xs[int(lo * len(xs))], xs[int(hi * len(xs))]
        y0, y1 = ys[int(lo * len(ys))], ys[int(hi * len(ys))]
        browser.draw_box(page, x0, y0, x1, y1)
        start = time.perf_counter()
        page.wait_for_selector('h3:has-text("galaxies in the selection")', timeout=TIMEOUT_S * 1e3)
        heading_s = time.perf_counter() - start
        page.wait_for_function(GALLERY_JS, timeout=TIMEOUT_S * 1e3)
        gallery_s = time.perf_counter() - start
        browser.wait_idle(page, TIMEOUT_S)
        seconds = time.perf_counter() - start
        heading = page.inner_text('h3:has-text("galaxies in the selection")')
        out.append({"selected": int(heading.split()[0].replace(",", "")), "seconds": seconds,
                    "heading_s": heading_s, "gallery_s": gallery_s})
        page.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=5, help="rectangles to draw (1-20)")
    parser.add_argument("--galaxies", type=int, default=GALAXY10, help="catalogue size (the sample tiled)")
    args = parser.parse_args(argv)
    boxes = min(max(args.boxes, 1), 20)
    executable = browser.check_browser()
    with tempfile.TemporaryDirectory(prefix="galaxy_vae_selection_") as tmp:
        write_tiled_folder(tile_dataset(open_dataset(default_dataset()), args.galaxies), Path(tmp))
        with browser.running_app(env={DATA_ENV: tmp}, timeout_s=TIMEOUT_S) as app, browser.chromium(executable) as b:
            runs = time_boxes(app.url, b, boxes)
    seconds = [r["seconds"] for r in runs]
    report = {"galaxies": args.galaxies, "boxes": runs, "selection_gallery_s_p50": statistics.median(seconds),
              "selection_gallery_s_max": max(seconds)}
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
