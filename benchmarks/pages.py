"""The app half of ``python -m benchmarks``: server time of page runs, start-up, memory.

Where the numbers come from
---------------------------
Every Streamlit script run is clocked from outside the app (:mod:`benchmarks.timing`): a JSON line
per run, whole page runs and fragment reruns told apart. Both sides of the comparison are read
from there, so both are clocked the same way:

    full_rerun_ms_p50       a whole run of the map page (entry file and sidebar included) at 21,785
                            galaxies, nothing selected, after the first (cold) run
    slider_fragment_ms_p50  a rerun of the generator's free-decoding fragment alone
                            (slider values -> decode -> nearest galaxy -> small map)
    generator_rerun_ms_p50  a whole run of the generator page (its grid-size slider, outside any
                            fragment): what the fragment saves on each slider move
    slider_paint_ms_p50     (server driver) z1 arrow key -> the new decoded image decoded and painted
                            in chromium (two animation frames after its <img> changed)

The app serves a temporary data folder ($GALAXY_VAE_DATA) holding only the tiled 21,785-galaxy
file (:func:`write_tiled_folder`); data/ is never written. Two drivers:

- **server** (the full run; needs chromium and playwright): the tiled file's persisted catalogue is
  written first (:func:`persist_catalogues`, as ``embed`` does: ``embed_catalogue_s``), then
  `streamlit run` started through ``benchmarks.serve``, headless chromium opens the map --
  ``cold_start_s`` is launch -> map drawn and the script idle, ``rss_mb`` the server's peak
  resident memory (VmHWM) then -- presses the
  arrow keys on the map's k slider (each press reruns the whole page), then on the generator's z1
  slider in a second tab (each press reruns only the fragment). Exactly what a user's browser
  triggers.
- **AppTest** (``--quick``, and the fallback without a browser), in a child process so that
  ``rss_mb`` is the app's memory, not the benchmark's. AppTest reruns the whole script on every
  slider move (it cannot run a fragment alone), so its fragment figure is the generator page's
  rerun minus nothing: it is reported as ``generator_page_rerun_ms_p50`` only.

Neither counts sending the page over the websocket or drawing it: that happens after the script
run. The server driver also reports the round trip its browser saw (key press -> record written).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import timing
from galaxy_vae.data import GalaxyData
from galaxy_vae.hdf5 import open_dataset, write_dataset
from galaxy_vae.paths import DATA_ENV

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]  # the checkout: streamlit_app.py and pages/
TILED_NAME = "galaxy10_size_tiled.h5"


def write_tiled_folder(data: GalaxyData, folder: Path) -> Path:
    """Write ``data`` (already tiled) as the only dataset of ``folder``; returns the file."""
    return write_dataset(folder / TILED_NAME, data.images, data.labels, data.ids, data.class_names, data.source)


def persist_catalogues(dataset: Path, checkpoint: Path) -> float:
    """What ``python -m galaxy_vae embed --data DATASET --checkpoint C`` does before the app starts:
    every similarity's persisted catalogue beside ``dataset`` (pixels aside); returns the seconds."""
    from galaxy_vae.catalogue import Catalogue, ModelSpace
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.hdf5 import open_for_search
    from galaxy_vae.lookalikes import similarity_files

    start = time.perf_counter()
    data = open_for_search(dataset, mapped=True)
    for path in sorted({p for p in similarity_files(checkpoint).values() if p is not None}):
        Catalogue.open(data, ModelSpace(load_checkpoint(path))).persist_all()
    return time.perf_counter() - start


def measure_sample_cold_start(dataset: Path, checkpoint: Path, folder: Path) -> dict:
    """``cold_start_sample_s``: `streamlit run` on ``dataset`` itself (linked into ``folder``) with
    its persisted catalogue written beforehand -> the map drawn in headless chromium."""
    from tests import browser

    link = folder / Path(dataset).name
    link.symlink_to(Path(dataset).resolve())
    seconds = persist_catalogues(link, checkpoint)
    measured = browser.measure_cold_start(env={DATA_ENV: str(folder)})
    return {"cold_start_sample_s": measured["cold_start_s"], "rss_sample_mb": measured["rss_mb"],
            "embed_sample_s": seconds}


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def _median(values: list[float]) -> float:
    return float(np.median(values))


def summarise(map_first_ms: float, reruns: list[float], with_gallery: list[float], fragments: list[float]) -> dict:
    """The key figures from run records taken after each page's first (cold) run."""
    if not reruns:
        raise RuntimeError(f"too few run records: {len(reruns)} map reruns")
    out = {"full_rerun_ms_p50": _median(reruns), "map_first_run_s": map_first_ms / 1e3, "map_reruns": len(reruns)}
    if fragments:
        out.update(slider_fragment_ms_p50=_median(fragments), slider_moves=len(fragments),
                   slider_fragment_ms_p95=float(np.percentile(fragments, 95)))
    if with_gallery:
        out["full_rerun_with_gallery_ms_p50"] = _median(with_gallery)
    return out


# --- AppTest, in a child process ----------------------------------------------------------------

def _run_pages_apptest(folder: Path, map_reruns: int, moves: int) -> dict:
    """(In the child.) Map page cold, then reruns plain and with a galaxy selected; then the
    generator with its z1 slider moved ``moves`` times."""
    records = folder / "apptest_timings.jsonl"
    os.environ[DATA_ENV] = str(folder)
    timing.install(records)
    from streamlit.testing.v1 import AppTest  # the benchmark drives the pages; library code never does

    def run(at: AppTest) -> AppTest:
        at.run()
        if at.exception:
            raise RuntimeError(f"the app raised: {at.exception[0].message}")
        return at

    at = run(AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=900))  # home, as a visitor arrives
    at.switch_page("pages/latent_map.py")
    run(at)
    rss, first = peak_rss_mb(), timing.read(records, "latent_map")[-1]
    since = len(timing.read(records, "latent_map"))
    for _ in range(map_reruns):
        run(at)
    reruns = timing.read(records, "latent_map")[since:]
    since = len(timing.read(records, "latent_map"))
    at.session_state["map_query"] = "galaxy"  # what a click on a galaxy sets: the query and its id
    at.session_state["galaxy"] = str(open_dataset(folder / TILED_NAME).ids[1234])
    for _ in range(map_reruns):
        run(at)
    with_gallery = timing.read(records, "latent_map")[since:]
    at.switch_page("pages/generator.py")
    run(at)
    since = len(timing.read(records, "generator"))
    slider = at.slider(key="gen_z1")
    lo, hi = slider.min, slider.max
    for x in np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), moves):
        at.slider(key="gen_z1").set_value(float(x))
        run(at)
    out = summarise(first, reruns, with_gallery, [])
    out.update(rss_mb=rss, generator_page_rerun_ms_p50=_median(timing.read(records, "generator")[since:]),
               app_torch_threads=_threads_of_a_new_thread(), driver="AppTest (child process)")
    return out


def _threads_of_a_new_thread() -> int:
    """torch's thread count as a new thread sees it -- as every Streamlit script run does (each run
    is a new thread, which takes the process-wide setting the app made)."""
    import threading

    import torch

    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def measure_pages_apptest(folder: Path, map_reruns: int = 5, moves: int = 10, timeout_s: float = 900) -> dict:
    """Map and generator page timings and rss_mb under AppTest in a fresh child process."""
    command = [sys.executable, "-m", "benchmarks.pages", str(folder), str(map_reruns), str(moves)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the AppTest run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- a real server and headless chromium --------------------------------------------------------

def _press_and_wait(page, slider_name: str, records: Path, page_name: str, fragment: bool,
                    presses: int) -> list[float]:
    """Press the arrow keys on slider ``slider_name`` (right, left, ...), each time waiting for the
    run's record and for the page to go idle. Returns each press's round trip in ms (key press ->
    record written, as the browser waits for it)."""
    from tests import browser

    thumb = page.get_by_role("slider", name=slider_name)
    trips = []
    for i in range(presses):
        before = len(timing.read(records, page_name, fragment))
        start = time.perf_counter()
        thumb.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        deadline = start + 120
        while len(timing.read(records, page_name, fragment)) <= before:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no run record of {page_name!r} within 120 s of moving {slider_name!r}")
            time.sleep(0.002)
        trips.append((time.perf_counter() - start) * 1e3)
        browser.wait_idle(page, 120)
    return trips


# the <img> of the generator's free decoding (Streamlit captions an image below it), or null
DECODED_IMG_JS = """(() => { for (const el of document.querySelectorAll('[data-testid="stImage"]')) {
    if ((el.innerText || '').startsWith('Decoded at')) return el.querySelector('img'); } return null; })()"""


def _press_and_paint(page, slider_name: str, presses: int) -> list[float]:
    """Slider move -> new image painted: press an arrow key on ``slider_name`` and clock until the
    decoded image's <img> holds a new picture, fully decoded, and the browser has painted a frame
    with it (two animation frames later). Returns ms per press."""
    from tests import browser

    thumb = page.get_by_role("slider", name=slider_name)
    painted = []
    for i in range(presses):
        before = page.evaluate(f"() => {{ const img = {DECODED_IMG_JS}; return img ? img.src : null; }}")
        start = time.perf_counter()
        thumb.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        page.wait_for_function(
            f"""(before) => {{ const img = {DECODED_IMG_JS};
                             return !!img && img.src !== before && img.complete && img.naturalWidth > 0; }}""",
            arg=before, timeout=120e3, polling="raf")
        page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
        painted.append((time.perf_counter() - start) * 1e3)
        browser.wait_idle(page, 120)
    return painted


def measure_pages_server(folder: Path, map_reruns: int = 8, moves: int = 15) -> dict:
    """cold_start_s, rss_mb and the page timings from `streamlit run` driven by headless chromium.
    Raises browser.BrowserUnavailable when chromium or playwright is missing."""
    from tests import browser

    executable = browser.check_browser()
    records = folder / "server_timings.jsonl"
    launcher = [sys.executable, "-m", "benchmarks.serve", str(records)]
    with browser.chromium(executable) as chromium, \
            browser.running_app(env={DATA_ENV: str(folder)}, timeout_s=300, launcher=launcher) as app:
        page = browser.open_page(chromium, app.url + "/latent_map", timeout_s=900)
        browser.wait_for_map(page, 900)  # the first visit encodes the catalogue
        out = {"cold_start_s": time.perf_counter() - app.started, "rss_mb": app.peak_rss_mb()}
        first, since = timing.read(records, "latent_map")[-1], len(timing.read(records, "latent_map"))
        map_trips = _press_and_wait(page, "Neighbours (k)", records, "latent_map", False, map_reruns)
        reruns = timing.read(records, "latent_map")[since:]
        gen = browser.open_page(chromium, app.url + "/generator", timeout_s=600)
        gen.get_by_role("slider", name="z₁").wait_for(timeout=600e3)
        browser.wait_idle(gen, 600)
        since = len(timing.read(records, "generator", True))
        slider_trips = _press_and_wait(gen, "z₁", records, "generator", True, moves)
        fragments = timing.read(records, "generator", True)[since:]
        paints = _press_and_paint(gen, "z₁", moves)
        gen.get_by_role("tab", name="Manifold grid").click()  # a slider outside any fragment: the whole page runs
        since = len(timing.read(records, "generator", False))
        _press_and_wait(gen, "Grid size (n x n)", records, "generator", False, map_reruns)
        page_runs = timing.read(records, "generator", False)[since:]
        out["rss_mb_after_generator"] = app.peak_rss_mb()
    out.update(summarise(first, reruns, [], fragments))
    out.update(map_roundtrip_ms_p50=_median(map_trips), slider_roundtrip_ms_p50=_median(slider_trips),
               slider_paint_ms_p50=_median(paints), slider_paint_ms_p95=float(np.percentile(paints, 95)),
               generator_rerun_ms_p50=_median(page_runs), driver="streamlit run + headless chromium")
    return out


if __name__ == "__main__":  # the AppTest child: python -m benchmarks.pages FOLDER RERUNS MOVES
    logging.basicConfig(level=logging.WARNING)
    result = _run_pages_apptest(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")
