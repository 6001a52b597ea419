"""Drive the running app in headless Debian chromium: start `streamlit run`, open a page, click a
galaxy on the latent map, read the neighbour gallery.

Shared by the browser tests and the benchmarks (``python -m benchmarks``: cold start, memory,
server timings). Playwright is a test extra, imported only inside the functions that drive the
browser, so importing this module needs neither it nor chromium. A missing browser raises
:class:`BrowserUnavailable` (a :class:`~galaxy_vae.errors.GalaxyVAEError` saying how to install it)
and a server that will not come up raises :class:`AppFailed` (with the tail of its log), so each
caller decides whether to skip or fail. The app is served from the checkout (``ROOT``), where
streamlit_app.py and pages/ live. Benchmarks import it as ``tests.browser`` from the checkout.

    with chromium() as browser, running_app() as app:
        page = open_page(browser, app.url + "/latent_map")
        wait_for_map(page)  # the first visit encodes the catalogue: allow minutes on 2 busy cores
        point = pick_isolated_point(galaxy_points(page))
        click_map(page, point.x, point.y)  # -> [{"trace": "Elliptical", "row": 1929}]
        captions = wait_for_gallery(page)  # -> ["#1 587… · Spiral CW · d=0.012", ...]

Clicks land on positions computed from the figure's own axes (``xaxis.l2p`` plus the plot
margins), so they follow the layout, the window size and the user's zoom, not fixed offsets.

Only Debian's chromium is used (``/usr/bin/chromium`` or ``$GALAXY_VAE_CHROMIUM``): the project
never downloads Playwright's own browsers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxy_vae.errors import GalaxyVAEError

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ENV = "GALAXY_VAE_CHROMIUM"  # path to another chromium binary, if not /usr/bin/chromium
INSTALL_HINT = "Install Debian's chromium: sudo apt-get install -y chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--no-first-run",
    "--enable-unsafe-swiftshader",  # WebGL (the map is scattergl) on the CPU rasteriser, no GPU needed
]
VIEWPORT = {"width": 1400, "height": 1000}  # wide layout: map, then the gallery below it
MAP_SELECTOR = ".js-plotly-plot"
EDGE_PX = 45  # keep clicks this far inside the plot area: the modebar and toolbar sit on the top edge


class BrowserUnavailable(GalaxyVAEError):
    """Playwright or chromium is missing: skip on a user's machine, fail under CI."""


class AppFailed(RuntimeError):
    """The streamlit server exited or never became healthy; the message ends with its log."""


# --- the browser --------------------------------------------------------------------------------

def find_chromium() -> Path:
    """The chromium binary to drive; raises BrowserUnavailable with how to install it."""
    chosen = os.environ.get(CHROMIUM_ENV)  # when set, the only candidate: an explicit choice is kept
    candidates = [chosen] if chosen else ["/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BrowserUnavailable("No chromium to drive", expected="an executable chromium",
                             found=f"nothing at {' or '.join(c for c in candidates if c)}", fix=INSTALL_HINT)


def check_browser() -> Path:
    """Chromium's path once both it and Python playwright are importable, else BrowserUnavailable."""
    try:
        import playwright.sync_api  # noqa: F401  (imported here so a missing package is reported, not raised)
    except ImportError as exc:
        raise BrowserUnavailable("Python playwright is missing", expected="an importable playwright",
                                 found=str(exc), fix="Install it with `make install` (the test extra), then "
                                 "Debian's chromium: sudo apt-get install -y chromium") from exc
    return find_chromium()


@contextmanager
def chromium(executable: Path | None = None) -> Iterator[playwright.sync_api.Browser]:  # noqa: F821
    """Headless Debian chromium under Playwright (a fresh temporary profile); closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = executable or check_browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, timeout_s: float = 180):
    """``url`` in a new tab of its own context (own cookies, so its own Streamlit session)."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(timeout_s * 1e3)
    page.goto(url, wait_until="domcontentloaded")
    return page


# --- the app server -----------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class App:
    """A `streamlit run` server in its own process group; see :func:`running_app`."""

    process: subprocess.Popen
    url: str
    log_path: Path
    started: float  # time.perf_counter() just before launch (cold-start timing starts here)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM) of the server process so far, in MiB (Linux /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return kb / 1024

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AppFailed(f"streamlit exited with code {self.process.returncode}; its log:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the whole process group (streamlit and anything it started), then reap it."""
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue


def wait_healthy(app: App, timeout_s: float) -> None:
    """Poll /_stcore/health until the server answers "ok"; AppFailed if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.check_alive()
        try:
            with urllib.request.urlopen(app.url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AppFailed(f"streamlit did not answer {app.url}/_stcore/health within {timeout_s:.0f} s; "
                    f"its log:\n{app.log_tail()}")


@contextmanager
def running_app(script: str = "streamlit_app.py", port: int | None = None, env: dict | None = None,
                timeout_s: float = 120, file_watcher: str = "none", log_dir: Path | None = None,
                launcher: list[str] | None = None) -> Iterator[App]:
    """`streamlit run` on 127.0.0.1 from the checkout, healthy on entry, killed (process group) on
    exit. ``env`` adds variables (e.g. GALAXY_VAE_TIMINGS); the log goes to a temporary file.
    ``file_watcher="none"``: no reload on edits, which a test does not need and which costs CPU
    (and floods the log) while other processes write into the checkout; pass "auto" to run the
    app exactly as `make run` does. ``launcher`` replaces `streamlit run` (the benchmarks' timed
    server: [python, -m, benchmarks.serve, TIMINGS])."""
    port = port or free_port()
    launcher = launcher or [str(Path(sys.executable).with_name("streamlit")), "run"]
    command = [*launcher, script, "--server.port", str(port), "--server.address", "127.0.0.1",
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", file_watcher]
    with tempfile.TemporaryDirectory(prefix="galaxy_vae_app_", dir=log_dir) as tmp:
        log_path = Path(tmp) / "streamlit.log"
        with open(log_path, "wb") as log:
            started = time.perf_counter()
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                       start_new_session=True)  # own process group: killed as one
        app = App(process, f"http://127.0.0.1:{port}", log_path, started)
        try:
            wait_healthy(app, timeout_s)
            yield app
        finally:
            app.stop()


# --- the latent map -----------------------------------------------------------------------------

# Every galaxy point of the map in page pixels, from the figure's own axes: galaxy traces are the
# ones marked meta="galaxies" (figures.GALAXY_META); the query star and neighbour rings are not.
POINTS_JS = """(sel) => {
  const gd = document.querySelector(sel);
  const fl = gd._fullLayout, box = gd.getBoundingClientRect();
  const xa = fl.xaxis, ya = fl.yaxis, size = fl._size;
  const out = {rows: [], ids: [], classes: [], zx: [], zy: [], x: [], y: [],
               area: [box.left + size.l, box.top + size.t, size.w, size.h]};
  gd._fullData.forEach((trace) => {
    if (trace.meta !== "galaxies" || trace.visible !== true) return;
    for (let i = 0; i < trace.x.length; i++) {
      out.rows.push(Number(trace.customdata[i]));
      out.ids.push(trace.text ? String(trace.text[i]) : "");  // a large map's traces carry no ids
      out.classes.push(trace.name);
      out.zx.push(Number(trace.x[i]));
      out.zy.push(Number(trace.y[i]));
      out.x.push(box.left + size.l + xa.l2p(trace.x[i]));
      out.y.push(box.top + size.t + ya.l2p(trace.y[i]));
    }
  });
  return out;
}"""


@dataclass(frozen=True)
class MapPoint:
    row: int  # dataset row (the point's customdata)
    id: str  # catalogue id (the point's hover text; "" on a large map, whose points carry none)
    class_name: str  # its trace's name
    z: tuple[float, float]  # map coordinates, as the figure holds them
    x: float  # page pixels, for page.mouse.click
    y: float
    gap: float  # pixels to the nearest other galaxy point: a click is unambiguous when this is large
    clickable: bool  # EDGE_PX inside the plot area, where a click reaches the point, not a toolbar


def wait_for_map(page, timeout_s: float = 180) -> None:
    """Wait until the map is drawn with its galaxy traces and the page's script run has finished."""
    page.wait_for_function(
        """(sel) => { const gd = document.querySelector(sel);
                      return gd && gd._fullLayout && gd._fullData &&
                             gd._fullData.some((t) => t.customdata && t.customdata.length); }""",
        arg=MAP_SELECTOR, timeout=timeout_s * 1e3)
    wait_idle(page, timeout_s)


def wait_idle(page, timeout_s: float = 180) -> None:
    """Wait until Streamlit is not running the script (its status widget is gone)."""
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_s * 1e3)


def galaxy_points(page) -> list[MapPoint]:
    """Every galaxy point drawn on the map, with its page position and pixel gap."""
    found = page.evaluate(POINTS_JS, MAP_SELECTOR)
    x, y = np.asarray(found["x"], dtype=float), np.asarray(found["y"], dtype=float)
    gap = np.full(len(x), np.inf)
    if len(x) > 1:
        from scipy.spatial import cKDTree

        xy = np.column_stack([x, y])  # (N, 2) page pixels
        gap = cKDTree(xy).query(xy, k=2)[0][:, 1]  # distance to the nearest *other* point
    left, top, width, height = found["area"]
    inside = ((x > left + EDGE_PX) & (x < left + width - EDGE_PX) &
              (y > top + EDGE_PX) & (y < top + height - EDGE_PX))
    return [MapPoint(found["rows"][i], found["ids"][i], found["classes"][i], (found["zx"][i], found["zy"][i]),
                     float(x[i]), float(y[i]), float(gap[i]), bool(inside[i])) for i in range(len(x))]


def pick_isolated_point(points: list[MapPoint]) -> MapPoint:
    """The clickable point farthest from any other: clicking it can only mean that galaxy."""
    clickable = [p for p in points if p.clickable]
    assert clickable, f"none of the {len(points)} galaxy points lies inside the plot area"
    return max(clickable, key=lambda p: p.gap)


# Plotly's own account of each click on the map (installed once per plot div, reset per click).
_LISTEN_JS = """(sel) => { const gd = document.querySelector(sel); window.__mapClicks = [];
  if (gd.__mapListening) return; gd.__mapListening = true;
  gd.on('plotly_click', (e) => window.__mapClicks.push(e.points.map((p) => ({
      trace: p.data.name, row: p.customdata === undefined ? null : Number(p.customdata)}))));
}"""


def click_map(page, x: float, y: float, timeout_s: float = 10) -> list[dict]:
    """Click the map at page pixels (x, y); return the points Plotly says were clicked, as
    [{"trace": name, "row": dataset row or None for a query/neighbour marker}] -- what the page's
    selection callback will receive. [] when the click hit no point."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate(_LISTEN_JS, MAP_SELECTOR)
    page.mouse.click(x, y)
    try:
        page.wait_for_function("() => window.__mapClicks.length > 0", timeout=timeout_s * 1e3)
    except PlaywrightTimeout:  # no plotly_click: the cursor was on no point
        return []
    return page.evaluate("() => window.__mapClicks[0]")


def draw_box(page, x0: float, y0: float, x1: float, y1: float) -> None:
    """Pick the map toolbar's box select, as a user does, and drag a rectangle (page pixels)."""
    page.locator('.modebar-btn[data-val="select"]').first.click()
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=6)
    page.mouse.move(x1, y1, steps=6)
    page.mouse.up()


def map_markers(page) -> dict[str, list[list[float]]]:
    """The highlight traces now drawn on the map: {"query": [[x, y]], "neighbours": [[x, y], ...]}."""
    return page.evaluate("""(sel) => { const out = {};
        document.querySelector(sel)._fullData.forEach((t) => {
            if (t.meta !== "galaxies") out[t.name] = Array.from(t.x, (x, i) => [Number(x), Number(t.y[i])]); });
        return out; }""", MAP_SELECTOR)


def wait_for_gallery(page, timeout_s: float = 120) -> list[str]:
    """Wait for the neighbour gallery; return its captions ("#rank id · class · d=…") by rank.
    For the first gallery of a page: after a later click the previous one is still there, so wait
    for the query caption (:func:`image_captions`) to change instead."""
    page.wait_for_selector('img[alt^="#1 "]', timeout=timeout_s * 1e3)
    wait_idle(page, timeout_s)
    captions = page.eval_on_selector_all('img[alt^="#"]', "(imgs) => imgs.map((i) => i.alt)")
    return sorted(captions, key=lambda c: int(c.split()[0][1:]))


def image_captions(page) -> list[str]:
    """Captions of every st.image on the page, in page order (query first, then the gallery)."""
    return page.eval_on_selector_all('[data-testid="stImageCaption"]', "(els) => els.map((e) => e.innerText)")


def page_errors(page) -> list[str]:
    """Text of exceptions and st.error boxes the app shows."""
    return page.eval_on_selector_all(
        '[data-testid="stException"], [data-testid="stAlertContentError"]',
        "(els) => els.map((e) => e.innerText)")


def screenshot(page, path: Path | str) -> Path:
    """The whole page, gallery included, as a PNG (Streamlit scrolls inside its main container, so
    the viewport is stretched to that container's height for the shot, then restored)."""
    height = page.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]');
                                      return m ? m.scrollHeight : document.body.scrollHeight; }""")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(height))})
    try:  # every image drawn first: the page loads them lazily, and a tall viewport brings them in
        page.wait_for_function("() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)",
                               timeout=60e3)
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(size)
    return Path(path)


def measure_cold_start(page_path: str = "/latent_map", env: dict | None = None) -> dict[str, float]:
    """``cold_start_s``: `streamlit run` launched -> ``page_path`` fully rendered (map drawn, script
    idle) in headless chromium, started beforehand so its own start-up is not counted; ``rss_mb``:
    the server's peak resident memory by then. ``env`` selects what to serve (e.g. a dataset)."""
    with chromium() as browser, running_app(env=env, timeout_s=300) as app:
        page = open_page(browser, app.url + page_path, timeout_s=600)
        wait_for_map(page, 600)
        seconds = time.perf_counter() - app.started
        return {"cold_start_s": seconds, "rss_mb": app.peak_rss_mb()}
