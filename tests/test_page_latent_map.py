"""AppTest of the latent map page: renders, finds neighbours of an upload and of a catalogue galaxy,
agrees with the CLI, and survives bad uploads. (Clicking a Plotly point: tests/test_browser.py.)"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from uploads import BAD_UPLOADS, VALID_ODD_UPLOADS

PAGE = str(ROOT / "pages" / "latent_map.py")


def neighbour_captions(at: AppTest) -> list[str]:
    """Gallery captions "#rank id · class · d=…", in rank order (the grid lists them by column)."""
    found = [c for img in at.image for c in img.captions if c.startswith("#")]
    return sorted(found, key=lambda c: int(c.split()[0][1:]))


@pytest.fixture(scope="module")
def at(sample_path):
    at = AppTest.from_file(PAGE, default_timeout=300).run()
    assert not at.exception, at.exception
    return at


def test_latent_map_renders_and_invites_a_query(at):
    assert at.title[0].value == "Latent map"
    assert any("Click a galaxy" in i.value for i in at.info)
    assert at.slider(key="k").value == 12
    assert not at.error


def test_latent_map_upload_of_milky_way_shows_neighbours(at, milky_way_path):
    at.file_uploader(key="map_upload").set_value(("milky-way.webp", milky_way_path.read_bytes(), "image/webp"))
    at.run()
    assert not at.exception, at.exception
    captions = neighbour_captions(at)
    assert len(captions) == 12 >= 8
    assert sorted(c.split()[0] for c in captions) == sorted(f"#{i}" for i in range(1, 13))
    assert any("prepared as the catalogue" in c for img in at.image for c in img.captions)
    assert at.get("download_button"), "the neighbour list can be downloaded as CSV"


def test_latent_map_page_matches_cli(at, milky_way_path, sample_path):
    """The page and `search --json` give the same neighbours for the same picture and settings."""
    at.file_uploader(key="map_upload").set_value(("milky-way.webp", milky_way_path.read_bytes(), "image/webp"))
    at.slider(key="k").set_value(10)
    at.run()
    page_ids = [c.split()[1] for c in neighbour_captions(at)]
    checkpoint = ROOT / "checkpoints" / at.session_state["checkpoint"]  # the sidebar's choice
    out = subprocess.run([sys.executable, "-m", "galaxy_vae", "search", "--data", str(sample_path),
                          "--checkpoint", str(checkpoint),
                          "--image", str(milky_way_path), "-k", "10", "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    rows = json.loads(out.stdout)
    assert len(rows) == 1 and [r["id"] for r in rows[0]] == page_ids
    assert set(rows[0][0]) == {"rank", "index", "id", "label", "class_name", "distance"}
    at.slider(key="k").set_value(12).run()


def test_latent_map_catalogue_query_excludes_itself(at, sample):
    at.file_uploader(key="map_upload").set_value(None).run()
    at.session_state["map_query"] = ("row", 5, at.session_state["map_data_key"])  # what a click on row 5 stores
    at.run()
    assert not at.exception, at.exception
    assert at.image[0].captions[0].split(" · ")[0] == sample.ids[5]
    captions = neighbour_captions(at)
    assert len(captions) == 12
    assert sample.ids[5] not in [c.split()[1] for c in captions]


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_latent_map_bad_upload_shows_error(at, name):
    filename, content, mime = BAD_UPLOADS[name]()
    at.file_uploader(key="map_upload").set_value((filename, content, mime)).run()
    assert not at.exception, at.exception
    assert at.error, f"{name}: no error shown"
    assert filename in at.error[0].value
    assert at.title[0].value == "Latent map" and at.get("plotly_chart"), "the page keeps working"


@pytest.mark.parametrize("name", sorted(VALID_ODD_UPLOADS))
def test_latent_map_unusual_but_valid_upload_is_searched(at, name):
    filename, content, mime = VALID_ODD_UPLOADS[name]()
    at.file_uploader(key="map_upload").set_value((filename, content, mime)).run()
    assert not at.exception, at.exception
    assert not at.error, f"{name}: {[e.value for e in at.error]}"
    assert len(neighbour_captions(at)) == 12


def test_latent_map_a_click_from_another_catalogue_is_not_shown_as_this_ones_galaxy(at):
    """A row number means a galaxy only in the catalogue it was clicked in (after a dataset or
    subset change the same number is another galaxy, or none)."""
    for stale in (("row", 5, ("other.h5", (0, 0), False)), ("row", 5)):  # another catalogue's; an old form
        at.session_state["map_query"] = stale
        at.run()
        assert not at.exception, at.exception
        assert any("Click a galaxy" in i.value for i in at.info) and not neighbour_captions(at)


def test_latent_map_settings_survive_a_visit_to_another_page(sample_path):
    """Widget state is dropped on a run of a page that does not draw it; k, the toggles and the
    sidebar's choices must come back as the user left them."""
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=300).run()
    at.switch_page("pages/latent_map.py").run()
    at.slider(key="k").set_value(5).run()
    at.toggle(key="invariant").set_value(True).run()
    at.switch_page("pages/generator.py").run()
    assert not at.exception, at.exception
    at.slider(key="gen_frames").set_value(9).run()
    at.switch_page("pages/latent_map.py").run()
    assert not at.exception, at.exception
    assert at.slider(key="k").value == 5 and at.toggle(key="invariant").value is True
    at.switch_page("pages/generator.py").run()
    assert at.slider(key="gen_frames").value == 9


def test_latent_map_background_of_decoded_galaxies_is_a_light_image_layer(at):
    """The optional background is one JPEG layer under the points: a few hundred kB, where a PNG
    of the same noisy 1,536 px grid weighed ~4 MB in every figure update."""
    at.toggle(key="background").set_value(True).run()
    assert not at.exception, at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    images = spec["layout"]["images"]
    assert len(images) == 1 and images[0]["source"].startswith("data:image/jpeg;base64,")
    assert images[0]["layer"] == "below" and len(images[0]["source"]) < 1_500_000
    at.toggle(key="background").set_value(False).run()
    assert "images" not in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]


def test_latent_map_warns_when_an_upload_lies_outside_the_catalogue(at, sample):
    """A bright checkerboard is nothing like an SDSS cutout: warned. A catalogue galaxy: not."""

    def png(array):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    board = (np.indices((128, 128)).sum(axis=0) // 8 % 2 * 255).astype(np.uint8)
    at.file_uploader(key="map_upload").set_value(("board.png", png(np.stack([board] * 3, -1)), "image/png")).run()
    assert not at.exception, at.exception
    assert any("outside what the catalogue contains" in w.value for w in at.warning)
    at.file_uploader(key="map_upload").set_value(("galaxy.png", png(sample.images[100]), "image/png")).run()
    assert not at.exception, at.exception
    assert not any("outside what the catalogue contains" in w.value for w in at.warning)
    assert len(neighbour_captions(at)) == at.slider(key="k").value
