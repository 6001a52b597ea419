"""The app half of ``python -m galaxy_vae bench``: server time of page runs, start-up, memory.

Where the numbers come from
---------------------------
Pages clock themselves: each wraps its body in ``app.timed(name)``, which appends
``{"name", "ms"}`` to the JSONL file named by $GALAXY_VAE_TIMINGS. Both sides of the comparison
are read from there, so both are clocked the same way, inside the script run:

    full_rerun_ms_p50       "latent_map": the whole map page run (sidebar included) at 21,785
                            galaxies, nothing selected, after the first (cold) run
    slider_fragment_ms_p50  "generator_fragment": the body of the generator's free-decoding
                            fragment (slider values -> decode -> nearest galaxy -> small map)

The app serves a temporary data folder ($GALAXY_VAE_DATA) holding only the tiled 21,785-galaxy
file (:func:`write_tiled_folder`); data/ is never written. Two drivers:

- **server** (the full run; needs chromium and playwright): `streamlit run`, headless chromium
  opens the map -- ``cold_start_s`` is launch -> map drawn and the script idle, ``rss_mb`` the
  server's peak resident memory (VmHWM) then -- presses the arrow keys on the map's k slider (each
  press reruns the whole page), then on the generator's z1 slider in a second tab (each press
  reruns only the fragment, as Streamlit runs fragments). Exactly what a user's browser triggers.
- **AppTest** (``--quick``, and the fallback without a browser), in a child process so that
  ``rss_mb`` (its VmHWM after the map page rendered) is the app's memory, not the benchmark's.
  AppTest reruns the whole script on every slider move (it cannot run a fragment alone), but the
  fragment body does the same work whichever run calls it, so its own record is its time.

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

from galaxy_vae.data import GalaxyData, write_dataset
from galaxy_vae.fetch import ENV_VAR as DATA_ENV

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]  # the checkout: streamlit_app.py and pages/
TIMINGS_ENV = "GALAXY_VAE_TIMINGS"  # = galaxy_vae.app.TIMINGS_ENV (not imported: app imports streamlit)
TILED_NAME = "galaxy10_size_tiled.h5"


def write_tiled_folder(data: GalaxyData, folder: Path) -> Path:
    """Write ``data`` (already tiled) as the only dataset of ``folder``; returns the file."""
    return write_dataset(folder / TILED_NAME, data.images, data.labels, data.ids, data.class_names, data.source)


def read_timings(path: Path) -> dict[str, list[float]]:
    """The page records in ``path``, grouped by name, in the order written: {name: [ms, ...]}."""
    out: dict[str, list[float]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            out.setdefault(record["name"], []).append(float(record["ms"]))
    return out


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def _median(values: list[float]) -> float:
    return float(np.median(values))


def count(path: Path, name: str) -> int:
    """How many ``name`` records ``path`` holds so far."""
    return len(read_timings(path).get(name, []))


def records_since(path: Path, name: str, since: int) -> list[float]:
    """The ``name`` records written after the first ``since`` of them."""
    return read_timings(path).get(name, [])[since:]


def summarise(map_first_ms: float, reruns: list[float], with_gallery: list[float], fragments: list[float]) -> dict:
    """The key figures from page records taken after each page's first (cold) run."""
    if not reruns or not fragments:
        raise RuntimeError(f"too few page records: {len(reruns)} map reruns, {len(fragments)} fragment runs")
    out = {"full_rerun_ms_p50": _median(reruns), "slider_fragment_ms_p50": _median(fragments),
           "slider_fragment_ms_p95": float(np.percentile(fragments, 95)), "map_first_run_s": map_first_ms / 1e3,
           "map_reruns": len(reruns), "slider_moves": len(fragments)}
    if with_gallery:
        out["full_rerun_with_gallery_ms_p50"] = _median(with_gallery)
    return out


# --- AppTest, in a child process ----------------------------------------------------------------

def _run_pages_apptest(folder: Path, map_reruns: int, moves: int) -> dict:
    """(In the child.) Map page cold, then reruns plain and with a galaxy selected; then the
    generator with its z1 slider moved ``moves`` times."""
    timings = folder / "apptest_timings.jsonl"
    os.environ[DATA_ENV], os.environ[TIMINGS_ENV] = str(folder), str(timings)
    from streamlit.testing.v1 import AppTest  # the benchmark drives the pages; library code never does

    def run(at: AppTest) -> AppTest:
        at.run()
        if at.exception:
            raise RuntimeError(f"{at._script_path} raised: {at.exception[0].message}")
        return at

    at = run(AppTest.from_file(str(ROOT / "pages" / "latent_map.py"), default_timeout=900))
    rss, first = peak_rss_mb(), read_timings(timings)["latent_map"][-1]
    since = count(timings, "latent_map")
    for _ in range(map_reruns):
        run(at)
    reruns, since = records_since(timings, "latent_map", since), count(timings, "latent_map")
    at.session_state["map_query"] = ("row", 1234, at.session_state["map_data_key"])  # what a click on a galaxy sets
    for _ in range(map_reruns):
        run(at)
    with_gallery = records_since(timings, "latent_map", since)
    gen = run(AppTest.from_file(str(ROOT / "pages" / "generator.py"), default_timeout=900))
    since, since_page = count(timings, "generator_fragment"), count(timings, "generator")
    slider = gen.slider(key="gen_z1")
    lo, hi = slider.min, slider.max
    for x in np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), moves):
        gen.slider(key="gen_z1").set_value(float(x))
        run(gen)
    out = summarise(first, reruns, with_gallery, records_since(timings, "generator_fragment", since))
    out.update(rss_mb=rss, generator_page_rerun_ms_p50=_median(records_since(timings, "generator", since_page)),
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
    command = [sys.executable, "-m", "galaxy_vae.bench_app", str(folder), str(map_reruns), str(moves)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the AppTest run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- a real server and headless chromium --------------------------------------------------------

def _press_and_wait(page, slider_name: str, timings: Path, record: str, presses: int) -> list[float]:
    """Press the arrow keys on slider ``slider_name`` (right, left, ...), each time waiting for the
    rerun's ``record`` in the timings file and for the page to go idle. Returns each press's round
    trip in ms (key press -> record written, as the browser waits for it)."""
    from galaxy_vae import browser

    thumb = page.get_by_role("slider", name=slider_name)
    trips = []
    for i in range(presses):
        before = len(read_timings(timings).get(record, []))
        start = time.perf_counter()
        thumb.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        deadline = start + 120
        while len(read_timings(timings).get(record, [])) <= before:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no {record!r} record within 120 s of moving {slider_name!r}")
            time.sleep(0.002)
        trips.append((time.perf_counter() - start) * 1e3)
        browser.wait_idle(page, 120)
    return trips


def measure_pages_server(folder: Path, map_reruns: int = 8, moves: int = 15) -> dict:
    """cold_start_s, rss_mb and the page timings from `streamlit run` driven by headless chromium.
    Raises browser.BrowserUnavailable when chromium or playwright is missing."""
    from galaxy_vae import browser

    executable = browser.check_browser()
    timings = folder / "server_timings.jsonl"
    env = {DATA_ENV: str(folder), TIMINGS_ENV: str(timings)}
    with browser.chromium(executable) as chromium, browser.running_app(env=env, timeout_s=300) as app:
        page = browser.open_page(chromium, app.url + "/latent_map", timeout_s=900)
        browser.wait_for_map(page, 900)  # the first visit encodes the catalogue
        out = {"cold_start_s": time.perf_counter() - app.started, "rss_mb": app.peak_rss_mb()}
        first, since = read_timings(timings)["latent_map"][-1], count(timings, "latent_map")
        map_trips = _press_and_wait(page, "Neighbours (k)", timings, "latent_map", map_reruns)
        reruns = records_since(timings, "latent_map", since)
        gen = browser.open_page(chromium, app.url + "/generator", timeout_s=600)
        gen.get_by_role("slider", name="z₁").wait_for(timeout=600e3)
        browser.wait_idle(gen, 600)
        since = count(timings, "generator_fragment")
        slider_trips = _press_and_wait(gen, "z₁", timings, "generator_fragment", moves)
        fragments = records_since(timings, "generator_fragment", since)
        out["rss_mb_after_generator"] = app.peak_rss_mb()
    out.update(summarise(first, reruns, [], fragments))
    out.update(map_roundtrip_ms_p50=_median(map_trips), slider_roundtrip_ms_p50=_median(slider_trips),
               driver="streamlit run + headless chromium")
    return out


if __name__ == "__main__":  # the AppTest child: python -m galaxy_vae.bench_app FOLDER RERUNS MOVES
    logging.basicConfig(level=logging.WARNING)
    result = _run_pages_apptest(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")
