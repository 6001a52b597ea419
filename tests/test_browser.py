"""Real-browser test of the app: `streamlit run` on 127.0.0.1, headless Debian chromium driven by
Python playwright, a click on a galaxy of the latent map, and the neighbour gallery it brings.

AppTest cannot click a Plotly point (it never runs the chart's JavaScript), so this is the one
test of the map's click -> selection -> rerun path, and of what AppTest cannot show of the URL
(widgets bound to query parameters). The harness (server, browser, map geometry) is
tests/browser.py, shared with the benchmarks. Without chromium or playwright these
tests skip with how to install them -- except under CI (CI=true), where they must run and fail.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import pytest

from galaxy_vae.paths import LARGE_MAP_ENV
from tests import browser as bh

pytestmark = pytest.mark.browser

MAP_TIMEOUT_S = 300  # the first load encodes the whole catalogue on a shared 2-core machine
CLICK_TIMEOUT_S = 120
CAPTION = re.compile(r"^#(\d+) (\S+) · (.+) · d=(\d+\.\d+)$")  # "#rank id · class · d=distance"


def _require_browser():
    try:
        return bh.check_browser()
    except bh.BrowserUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"browser tests must run under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def browser():
    executable = _require_browser()
    with bh.chromium(executable) as b:
        yield b


@pytest.fixture(scope="module")
def app(sample_path):
    """One server for the module. Its visitors only ever open /latent_map (never `/`), so the
    deep-link test still sees what a bookmark shows on a freshly started server."""
    with bh.running_app() as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("browser")  # failure screenshots (under the system temp dir)


def _explain(app, page, shots, what: str) -> str:
    """A failure message: what went wrong, where the screenshot is, and the end of the server log."""
    try:
        shot, errors = bh.screenshot(page, shots / "failure.png"), bh.page_errors(page)
    except Exception as exc:
        shot, errors = f"none ({exc})", "unknown"
    return f"{what}\nscreenshot: {shot}\nerrors on the page: {errors}\nserver log:\n{app.log_tail()}"


@pytest.fixture(scope="module")
def map_page(browser, app, shots):
    """The latent map in one browser session for the module, drawn and idle (the first visit
    encodes the catalogue; every later step reuses this page, so the module pays for it once)."""
    page = bh.open_page(browser, app.url + "/latent_map", timeout_s=MAP_TIMEOUT_S)
    try:
        bh.wait_for_map(page, MAP_TIMEOUT_S)
    except Exception as exc:
        pytest.fail(_explain(app, page, shots, f"the latent map never appeared: {exc}"))
    return page


@dataclass
class Click:
    points: list  # every galaxy point before the click (bh.MapPoint)
    target: bh.MapPoint  # the point clicked
    reported: list  # what Plotly reported clicked: [{"trace", "row"}]
    had_gallery: bool  # whether a gallery was on the page before the click
    captions: list  # the gallery's captions by rank, once it appeared
    seconds: float  # click -> gallery on the page and the script idle


@pytest.fixture(scope="module")
def clicked(map_page, app, shots) -> Click:
    """A click on the most isolated galaxy of the map, and the gallery it brought."""
    had_gallery = map_page.query_selector('img[alt^="#1 "]') is not None
    points = bh.galaxy_points(map_page)
    target = bh.pick_isolated_point(points)
    start = time.perf_counter()
    reported = bh.click_map(map_page, target.x, target.y)
    try:
        captions = bh.wait_for_gallery(map_page, CLICK_TIMEOUT_S)
    except Exception as exc:
        pytest.fail(_explain(app, map_page, shots, f"no neighbour gallery {CLICK_TIMEOUT_S} s after "
                                                   f"clicking {target} (Plotly reported {reported}): {exc}"))
    return Click(points, target, reported, had_gallery, captions, time.perf_counter() - start)


def test_browser_deep_link_opens_the_app_navigation(map_page):
    """A bookmark to /latent_map on a freshly started server shows the app's own page list."""
    links = map_page.eval_on_selector_all('[data-testid="stSidebarNavLink"]', "(a) => a.map((e) => e.innerText)")
    labels = [link.split("\n")[-1].strip() for link in links]  # innerText is "<icon name>\n\n<title>"
    assert "Latent map" in labels and "streamlit app" not in labels, labels


def test_browser_map_click_shows_neighbour_gallery(clicked, map_page, app, shots):
    page = map_page
    assert not clicked.had_gallery, "no gallery before any click"
    assert not bh.page_errors(page), _explain(app, page, shots, "the page shows an error")

    # The gallery: k = 12 neighbours, ranked, nearest first, each "#rank id · class · d=…".
    parsed = [CAPTION.match(c) for c in clicked.captions]
    assert all(parsed), clicked.captions
    assert [int(m[1]) for m in parsed] == list(range(1, 13))
    distances = [float(m[4]) for m in parsed]
    assert distances == sorted(distances)

    # The query is the galaxy under the cursor: the clicked point, or (when points overlap at
    # that pixel, as on an untrained map) one of those it covers; never among its own neighbours.
    target, by_id = clicked.target, {p.id: p for p in clicked.points}
    under_cursor = {p.id for p in clicked.points if abs(p.x - target.x) <= 2 and abs(p.y - target.y) <= 2}
    query_id, query_class = bh.image_captions(page)[0].split(" · ")
    assert query_id in under_cursor, (query_id, target)
    assert [c["row"] for c in clicked.reported] == [by_id[query_id].row], clicked.reported
    if target.gap > 4:  # isolated: the click can only have meant this galaxy
        assert (query_id, query_class) == (target.id, target.class_name)
    neighbour_ids = [m[2] for m in parsed]
    assert query_id not in neighbour_ids
    assert all(by_id[i].class_name == m[3] for i, m in zip(neighbour_ids, parsed))

    # The map marks them: a star on the query, rings on exactly the neighbours in the gallery.
    markers = bh.map_markers(page)
    assert markers["query"] == [list(by_id[query_id].z)], markers.get("query")
    assert {tuple(z) for z in markers["neighbours"]} == {by_id[i].z for i in neighbour_ids}
    assert clicked.seconds < CLICK_TIMEOUT_S


def test_browser_click_on_a_ringed_neighbour_makes_it_the_query(clicked, map_page):
    """Exploring outwards: clicking one of the ringed neighbours shows that galaxy's neighbours.
    (Last in the module: it moves the shared page on to a new query.)"""
    page = map_page
    points = bh.galaxy_points(page)  # positions after the rerun
    by_z = {p.z: p for p in points}
    star = by_z[tuple(bh.map_markers(page)["query"][0])]
    ringed = [by_z[tuple(z)] for z in bh.map_markers(page)["neighbours"]]
    away = [p for p in ringed if p.clickable and abs(p.x - star.x) + abs(p.y - star.y) > 20]  # not under the star
    assert away, f"every ringed neighbour is hidden under the query star: {ringed}"
    ring = max(away, key=lambda p: p.gap)
    reported = bh.click_map(page, ring.x, ring.y)
    # the ring's galaxy, or (rings packed closer than a few pixels) a galaxy right under the cursor
    allowed = {ring.row} if ring.gap > 3 else {p.row for p in points if abs(p.x - ring.x) + abs(p.y - ring.y) <= 3}
    rows = [c["row"] for c in reported]
    assert len(rows) == 1 and rows[0] in allowed, f"Plotly reported {reported} for a click on {ring}"
    chosen = next(p for p in points if p.row == rows[0])
    page.wait_for_function("""(id) => { const c = document.querySelector('[data-testid="stImageCaption"]');
                                        return c && c.innerText.startsWith(id + " "); }""",
                           arg=chosen.id, timeout=CLICK_TIMEOUT_S * 1e3)


def slider_values(page) -> dict[str, str]:
    """{label: value shown} of every slider on the page."""
    found = page.eval_on_selector_all('[data-testid="stSlider"]', """(els) => els.map((e) => [
        e.querySelector('[data-testid="stWidgetLabel"]').innerText,
        e.querySelector('[data-testid="stSliderThumbValue"]').innerText])""")
    return dict(found)


def test_browser_milky_way_link_on_a_fresh_server_reproduces_the_view_and_follows_the_widgets(browser, sample_path):
    """A shared link opened as a fresh server's very first request: the app's own navigation and
    sidebar appear, the settings in the link are applied, and moving a setting rewrites the URL."""
    link = "/milky_way?top_k=5&temperature=1.5&samples=8&answer=pixels"
    with bh.running_app() as fresh:
        page = bh.open_page(browser, fresh.url + link, timeout_s=MAP_TIMEOUT_S)
        page.wait_for_selector('[data-testid="stSidebarNavLink"]:has-text("Latent map")', timeout=MAP_TIMEOUT_S * 1e3)
        page.wait_for_selector('[data-testid="stSlider"]', timeout=MAP_TIMEOUT_S * 1e3)
        bh.wait_idle(page, MAP_TIMEOUT_S)
        values = slider_values(page)
        assert values["Galaxies shown per similarity (k)"] == "5" and values["Samples"] == "8", values
        assert values["Temperature T (posterior σ)"] == "1.50", values
        assert "/milky_way" in page.url and "top_k=5" in page.url and "answer=pixels" in page.url, page.url
        assert any("under pixels" in t for t in page.eval_on_selector_all(
            '[data-testid="stMarkdownContainer"]', "(els) => els.map((e) => e.innerText)"))
        page.get_by_role("slider", name="Galaxies shown per similarity (k)").press("ArrowRight")
        page.wait_for_function("() => location.search.includes('top_k=6')", timeout=CLICK_TIMEOUT_S * 1e3)
        bh.wait_idle(page, CLICK_TIMEOUT_S)
        assert "samples=8" in page.url and "answer=pixels" in page.url, page.url


def test_browser_markup_in_a_file_name_or_its_content_makes_the_browser_fetch_nothing(browser, app, sample_path):
    """A text file holding an image link, and a file whose name is one: the page shows both as
    text, and chromium never asks for the linked URL."""
    from uploads import MARKDOWN_IMAGE, MARKDOWN_NAME

    page = bh.open_page(browser, app.url + "/latent_map", timeout_s=MAP_TIMEOUT_S)
    bh.wait_for_map(page, MAP_TIMEOUT_S)
    asked = []
    page.on("request", lambda request: asked.append(request.url) if ":8999" in request.url else None)
    uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    for name, content, shows in ((MARKDOWN_NAME, b"not a picture", MARKDOWN_NAME),
                                 ("notes.png", MARKDOWN_IMAGE.encode(), MARKDOWN_IMAGE)):
        uploader.set_input_files({"name": name, "mimeType": "image/png", "buffer": content})
        page.wait_for_function("""(text) => [...document.querySelectorAll('[data-testid="stAlertContentError"]')]
                                              .some((e) => e.innerText.replaceAll('\u200b', '').includes(text))""",
                               arg=shows, timeout=CLICK_TIMEOUT_S * 1e3)  # shown as typed, links broken invisibly
        bh.wait_idle(page, CLICK_TIMEOUT_S)
        assert not page.query_selector('[data-testid="stAlertContentError"] img, [data-testid="stAlertContentError"] a')
        assert not page.query_selector('[data-testid="stAlertContentError"] strong')
    page.wait_for_timeout(1000)
    assert not asked, asked


def test_browser_a_box_drawn_on_the_map_selects_exactly_the_galaxies_inside_it(browser, app, sample_path):
    """Dragging on the map draws a box; the page lists the galaxies whose points lie inside the
    rectangle on screen: their count, the first page of the gallery, and the link that restores it."""
    page = bh.open_page(browser, app.url + "/latent_map", timeout_s=MAP_TIMEOUT_S)
    bh.wait_for_map(page, MAP_TIMEOUT_S)
    points = bh.galaxy_points(page)
    xs, ys = sorted(p.x for p in points), sorted(p.y for p in points)
    x0, x1 = xs[len(xs) // 3], xs[2 * len(xs) // 3]
    y0, y1 = ys[len(ys) // 3], ys[2 * len(ys) // 3]
    bh.draw_box(page, x0, y0, x1, y1)
    page.wait_for_function("() => location.search.includes('select=box')", timeout=CLICK_TIMEOUT_S * 1e3)
    page.wait_for_selector('h3:has-text("galaxies in the selection")', timeout=CLICK_TIMEOUT_S * 1e3)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stImageCaption\"]').length >= 24",
                           timeout=CLICK_TIMEOUT_S * 1e3)
    bh.wait_idle(page, CLICK_TIMEOUT_S)
    # inside the dragged rectangle, allowing a pixel for rounding at its edges: only points well
    # inside or well outside are judged
    inside = sorted(p.row for p in points if x0 + 1 < p.x < x1 - 1 and y0 + 1 < p.y < y1 - 1)
    edge = {p.row for p in points  # within a pixel of any of the four sides
            if ((x0 - 1 <= p.x <= x0 + 1 or x1 - 1 <= p.x <= x1 + 1) and y0 - 1 <= p.y <= y1 + 1)
            or ((y0 - 1 <= p.y <= y0 + 1 or y1 - 1 <= p.y <= y1 + 1) and x0 - 1 <= p.x <= x1 + 1)}
    heading = page.inner_text('h3:has-text("galaxies in the selection")')
    count = int(heading.split()[0].replace(",", ""))
    assert len(inside) <= count <= len(inside) + len(edge), (count, len(inside), len(edge))
    by_row = {p.row: p for p in points}
    shown = {c.split(" · ")[0] for c in bh.image_captions(page)}
    expected_first = {by_row[r].id for r in sorted(set(inside) | edge)[:24]}
    assert len(shown) == 24 and len(shown - expected_first) <= len(edge), (shown - expected_first)
    selected = {by_row[r].id for r in inside}
    assert all(i in selected or by_row_id in edge for i, by_row_id in
               ((i, next(p.row for p in points if p.id == i)) for i in shown))


def test_browser_a_link_to_a_galaxy_on_a_fresh_server_and_finding_one_by_id(browser, sample_path, sample):
    """?galaxy=ID as a fresh server's first request opens that galaxy with its neighbours; typing
    another id into "Find a galaxy by id" moves to it and rewrites the link."""
    first, second = str(sample.ids[1234]), str(sample.ids[4321])
    with bh.running_app() as fresh:
        page = bh.open_page(browser, f"{fresh.url}/latent_map?galaxy={first}&k=6", timeout_s=MAP_TIMEOUT_S)
        captions = bh.wait_for_gallery(page, MAP_TIMEOUT_S)
        assert bh.image_captions(page)[0].startswith(first + " · ") and len(captions) == 6
        box = page.get_by_label("Find a galaxy by id")
        box.fill(second)
        box.press("Enter")
        page.wait_for_function("(id) => location.search.includes('galaxy=' + id)", arg=second,
                               timeout=CLICK_TIMEOUT_S * 1e3)
        page.wait_for_function("""(id) => { const c = document.querySelector('[data-testid="stImageCaption"]');
                                            return c && c.innerText.startsWith(id + " "); }""",
                               arg=second, timeout=CLICK_TIMEOUT_S * 1e3)
        bh.wait_idle(page, CLICK_TIMEOUT_S)
        assert len(bh.wait_for_gallery(page, CLICK_TIMEOUT_S)) == 6


def test_browser_a_large_catalogue_map_is_a_density_image_and_a_click_selects_the_exact_galaxy(browser, sample):
    """The large-catalogue map (here from 1,000 galaxies, $GALAXY_VAE_LARGE_MAP, so the sample takes
    it): every galaxy in a density image under one point per grid cell, each point carrying its own
    row and no id text, and a click on one opens exactly that galaxy."""
    with bh.running_app(env={LARGE_MAP_ENV: "1000"}) as fresh:
        page = bh.open_page(browser, fresh.url + "/latent_map", timeout_s=MAP_TIMEOUT_S)
        bh.wait_for_map(page, MAP_TIMEOUT_S)
        images = page.evaluate(f"() => document.querySelector('{bh.MAP_SELECTOR}').layout.images.map((i) => i.source)")
        assert len(images) == 1 and images[0].startswith("data:image/png;base64,")  # the density layer
        points = bh.galaxy_points(page)
        rows = [p.row for p in points]
        assert len(set(rows)) == len(rows) and 0 < len(rows) < len(sample) and max(rows) < len(sample)
        assert all(p.id == "" for p in points)  # compact: no per-point ids sent
        assert all(sample.class_names[sample.labels[p.row]] == p.class_name for p in points)
        target = bh.pick_isolated_point(points)
        reported = bh.click_map(page, target.x, target.y)
        assert [c["row"] for c in reported] == [target.row], reported
        bh.wait_for_gallery(page, CLICK_TIMEOUT_S)
        query_id, query_class = bh.image_captions(page)[0].split(" · ")
        assert (query_id, query_class) == (str(sample.ids[target.row]), target.class_name)
