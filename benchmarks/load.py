"""Many users at once: ``python -m benchmarks.load [--sessions 20] [--seconds 60]``.

N concurrent real-browser sessions (one headless Debian chromium, a context each, driven by
Playwright's async API) against a local `streamlit run` on 127.0.0.1 for T seconds. Each session
loops over what users do most: click a galaxy on the latent map and wait for its neighbours, move
the generator's z1 slider and wait for the new picture, upload NASA's Milky Way on the challenge
page and wait for the answer. Reported per step: successes, errors shown (st.error), exceptions
shown, disconnects, and wall-time p50/p95 as the browser saw them; for the server: resident memory
before (after one warm-up visit), at its peak and after every session closed, and its CPU seconds.
The server's own cost per step comes from its run records (:mod:`benchmarks.timing`).

Chromium is the bottleneck on two cores: browser times grow with N long before the server's do.
Bounded: at most 40 sessions and 600 s, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import timing
from galaxy_vae.paths import milky_way_path
from tests import browser

MAX_SESSIONS, MAX_SECONDS = 40, 600
STEP_TIMEOUT_S = 120
STEPS = ("map_click", "slider_move", "upload_milky_way")
ALERTS = '[data-testid="stAlertContentError"]'
EXCEPTIONS = '[data-testid="stException"]'


@dataclass
class Step:
    ok: list[float] = field(default_factory=list)  # seconds of each successful step
    errors: int = 0  # an st.error on the page after the step
    exceptions: int = 0  # a Streamlit exception box
    disconnects: int = 0  # the page lost its connection to the server
    failures: list[str] = field(default_factory=list)  # what else went wrong (timeouts), first few


def _proc(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of the server and its threads so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _idle(page) -> None:
    await page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=STEP_TIMEOUT_S * 1e3)


async def _judge(page, step: Step, started: float) -> None:
    """Count what the page shows after a step."""
    if await page.query_selector(EXCEPTIONS):
        step.exceptions += 1
    elif await page.query_selector(ALERTS):
        step.errors += 1
    elif await page.query_selector('[data-testid="stConnectionStatus"], [role="dialog"]:has-text("Connection")'):
        step.disconnects += 1
    else:
        step.ok.append(time.perf_counter() - started)


async def _map_click(page, url: str, rng: np.random.Generator) -> None:
    await page.goto(url + "/latent_map", wait_until="domcontentloaded")
    await page.wait_for_function(
        """(sel) => { const gd = document.querySelector(sel);
                      return gd && gd._fullData && gd._fullData.some((t) => t.customdata && t.customdata.length); }""",
        arg=browser.MAP_SELECTOR, timeout=STEP_TIMEOUT_S * 1e3)
    await _idle(page)
    found = await page.evaluate(browser.POINTS_JS, browser.MAP_SELECTOR)
    left, top, width, height = found["area"]
    xy = np.column_stack([found["x"], found["y"]])
    inside = np.flatnonzero((xy[:, 0] > left + 45) & (xy[:, 0] < left + width - 45) &
                            (xy[:, 1] > top + 45) & (xy[:, 1] < top + height - 45))
    x, y = xy[rng.choice(inside)]
    before = await page.eval_on_selector_all('img[alt^="#1 "]', "(e) => e.map((i) => i.src)")
    await page.mouse.click(float(x), float(y))
    await page.wait_for_function("""(before) => { const i = document.querySelector('img[alt^="#1 "]');
                                                  return i && !before.includes(i.src); }""",
                                 arg=before, timeout=STEP_TIMEOUT_S * 1e3)
    await _idle(page)


async def _slider_move(page, url: str, rng: np.random.Generator) -> None:
    if "/generator" not in page.url:
        await page.goto(url + "/generator", wait_until="domcontentloaded")
        await page.get_by_role("slider", name="z₁").wait_for(timeout=STEP_TIMEOUT_S * 1e3)
        await _idle(page)
    caption = """() => { const c = [...document.querySelectorAll('[data-testid="stImageCaption"]')]
                                .find((e) => e.innerText.startsWith("Decoded at ("));
                         return c ? c.innerText : null; }"""
    before = await page.evaluate(caption)
    await page.get_by_role("slider", name="z₁").press("ArrowRight" if rng.random() < 0.5 else "ArrowLeft")
    await page.wait_for_function(f"(before) => {{ const now = ({caption})(); return now && now !== before; }}",
                                 arg=before, timeout=STEP_TIMEOUT_S * 1e3)
    await _idle(page)


async def _upload(page, url: str, picture: Path) -> None:
    await page.goto(url + "/milky_way", wait_until="domcontentloaded")
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    await uploader.wait_for(state="attached", timeout=STEP_TIMEOUT_S * 1e3)
    await uploader.set_input_files(str(picture))
    await page.wait_for_function("""() => { const d = document.querySelector('[data-testid="stFileUploaderDropzone"]');
                                            return d && /[0-9.]+(KB|MB)/.test(d.innerText); }""",
                                 timeout=STEP_TIMEOUT_S * 1e3)  # the upload arrived (its size is listed)
    await page.get_by_text("lookalike 1 · predicted").wait_for(timeout=STEP_TIMEOUT_S * 1e3)
    await _idle(page)


async def _session(chromium, url: str, picture: Path, deadline: float, seed: int, steps: dict[str, Step],
                   loops: int | None = None) -> None:
    rng = np.random.default_rng(seed)
    context = await chromium.new_context(viewport=browser.VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_S * 1e3)
    actions = {"map_click": lambda: _map_click(page, url, rng), "slider_move": lambda: _slider_move(page, url, rng),
               "upload_milky_way": lambda: _upload(page, url, picture)}
    try:
        while time.perf_counter() < deadline and loops != 0:
            loops = None if loops is None else loops - 1
            for name in STEPS:
                if time.perf_counter() >= deadline:
                    break
                started = time.perf_counter()
                try:
                    await actions[name]()
                except Exception as exc:
                    steps[name].failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
                    continue
                await _judge(page, steps[name], started)
    finally:
        await context.close()


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


async def _run(sessions: int, seconds: float, records: Path) -> dict:
    from playwright.async_api import async_playwright

    picture = milky_way_path()
    if picture is None:
        raise SystemExit("NASA's Milky Way picture is missing: the upload step needs it (see galaxy_vae.paths).")
    launcher = [sys.executable, "-m", "benchmarks.serve", str(records)]
    with browser.running_app(timeout_s=300, launcher=launcher) as app:
        pid = app.process.pid
        async with async_playwright() as pw:
            chromium = await pw.chromium.launch(executable_path=str(browser.check_browser()), headless=True,
                                                args=browser.CHROMIUM_ARGS)
            warm = {name: Step() for name in STEPS}
            await _session(chromium, app.url, picture, time.perf_counter() + 600, 0, warm, loops=1)  # caches built
            rss_before, cpu_before = _proc(pid, "VmRSS:"), _cpu_seconds(pid)
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # the peak from here on
            steps = {name: Step() for name in STEPS}
            deadline = time.perf_counter() + seconds
            started = time.perf_counter()
            await asyncio.gather(*(_session(chromium, app.url, picture, deadline, 1 + i, steps)
                                   for i in range(sessions)))
            wall = time.perf_counter() - started
            rss_peak = _proc(pid, "VmHWM:")
            await chromium.close()
        await asyncio.sleep(15)  # sessions end when their sockets close; caches stay as they should
        rss_after, cpu = _proc(pid, "VmRSS:"), _cpu_seconds(pid) - cpu_before
    server = {page: timing.read(records, page) for page in ("latent_map", "generator", "milky_way")}
    fragments = timing.read(records, "generator", fragment=True)
    return {
        "sessions": sessions, "seconds": seconds, "wall_s": wall,
        "steps": {name: {"ok": len(s.ok), "errors": s.errors, "exceptions": s.exceptions,
                         "disconnects": s.disconnects, "failures": len(s.failures),
                         "failure_examples": s.failures[:3], "p50_s": _percentile(s.ok, 50),
                         "p95_s": _percentile(s.ok, 95)} for name, s in steps.items()},
        "server": {"rss_mb_before": rss_before, "rss_mb_peak": rss_peak, "rss_mb_after": rss_after,
                   "rss_after_vs_before": rss_after / rss_before, "cpu_s": cpu,
                   "page_runs_ms_p50": {p: statistics.median(v) if v else None for p, v in server.items()},
                   "slider_fragment_ms_p50": statistics.median(fragments) if fragments else None,
                   "page_runs": {p: len(v) for p, v in server.items()}, "fragment_runs": len(fragments)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20,
                        help=f"concurrent browser sessions (at most {MAX_SESSIONS})")
    parser.add_argument("--seconds", type=float, default=60, help=f"length of the run (at most {MAX_SECONDS})")
    args = parser.parse_args(argv)
    if not (1 <= args.sessions <= MAX_SESSIONS and 1 <= args.seconds <= MAX_SECONDS):
        parser.error(f"--sessions must be 1..{MAX_SESSIONS} and --seconds 1..{MAX_SECONDS}")
    with tempfile.TemporaryDirectory(prefix="galaxy_vae_load_") as tmp:
        report = asyncio.run(_run(args.sessions, args.seconds, Path(tmp) / "runs.jsonl"))
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
