"""AppTest of the latent map page: renders, finds neighbours of an upload and of a catalogue galaxy,
agrees with the CLI, encodes an upload once per run, and survives bad uploads. (Clicking a Plotly
point: tests/test_browser.py.) Every test starts the app afresh from streamlit_app.py."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from apptest import assert_ok, open_page
from conftest import ROOT
from PIL import Image
from streamlit.testing.v1 import AppTest
from uploads import BAD_UPLOADS, VALID_ODD_UPLOADS

from galaxy_vae import catalogue as catalogue_module
from galaxy_vae.captions import esc
from galaxy_vae.catalogue import ModelSpace
from galaxy_vae.paths import checkpoint_dir

UNESCAPED_MARKUP = re.compile(r"(?<!\\)(!\[|\]\(|\*\*)")  # an image or link, or bold, not escaped


def neighbour_captions(at: AppTest) -> list[str]:
    """Gallery captions "#rank id · class · d=…", in rank order (the grid lists them by column)."""
    found = [c for img in at.image for c in img.captions if c.startswith("#")]
    return sorted(found, key=lambda c: int(c.split()[0][1:]))


@pytest.fixture
def at(sample_path):
    return open_page("latent_map")


def upload(at: AppTest, path_or_bytes, name: str = "milky-way.webp", mime: str = "image/webp") -> AppTest:
    content = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    at.file_uploader(key="map_upload").set_value((name, content, mime)).run()
    assert_ok(at)
    return at


def test_latent_map_renders_and_invites_a_query(at):
    assert at.title[0].value == "Latent map"
    assert any("Click a galaxy" in i.value for i in at.info)
    assert at.slider(key="k").value == 12
    assert not at.error


def test_latent_map_upload_of_milky_way_shows_neighbours(at, milky_way_path):
    upload(at, milky_way_path)
    captions = neighbour_captions(at)
    assert len(captions) == 12 >= 8
    assert sorted(c.split()[0] for c in captions) == sorted(f"#{i}" for i in range(1, 13))
    assert any("prepared as the catalogue" in c for img in at.image for c in img.captions)
    assert at.get("download_button"), "the neighbour list can be downloaded as CSV"


def test_latent_map_page_matches_cli(at, milky_way_path, sample_path):
    """The page and `search --json` give the same neighbours for the same picture and settings."""
    at.slider(key="k").set_value(10)
    upload(at, milky_way_path)
    page_ids = [c.split()[1] for c in neighbour_captions(at)]
    checkpoint = checkpoint_dir() / at.session_state["model"]  # the sidebar's choice
    out = subprocess.run([sys.executable, "-m", "galaxy_vae", "search", "--data", str(sample_path),
                          "--checkpoint", str(checkpoint),
                          "--image", str(milky_way_path), "-k", "10", "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    rows = json.loads(out.stdout)
    assert len(rows) == 1 and [r["id"] for r in rows[0]] == page_ids
    assert set(rows[0][0]) == {"rank", "index", "id", "label", "class_name", "distance"}


def test_latent_map_catalogue_query_excludes_itself(at, sample):
    at.text_input(key="galaxy").set_value(sample.ids[5]).run()  # what finding it, or clicking it, sets
    assert_ok(at)
    assert at.image[0].captions[0].split(" · ")[0] == sample.ids[5]
    captions = neighbour_captions(at)
    assert len(captions) == 12
    assert sample.ids[5] not in [c.split()[1] for c in captions]


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_latent_map_bad_upload_shows_error(at, name):
    filename, content, mime = BAD_UPLOADS[name]()
    at.file_uploader(key="map_upload").set_value((filename, content, mime)).run()
    assert_ok(at)
    assert at.error, f"{name}: no error shown"
    assert esc(filename) in at.error[0].value
    assert not UNESCAPED_MARKUP.search(at.error[0].value), at.error[0].value  # text from the file stays text
    assert at.title[0].value == "Latent map" and at.get("plotly_chart"), "the page keeps working"


@pytest.mark.parametrize("name", sorted(VALID_ODD_UPLOADS))
def test_latent_map_unusual_but_valid_upload_is_searched(at, name):
    filename, content, mime = VALID_ODD_UPLOADS[name]()
    at.file_uploader(key="map_upload").set_value((filename, content, mime)).run()
    assert_ok(at)
    assert not at.error, f"{name}: {[e.value for e in at.error]}"
    assert len(neighbour_captions(at)) == 12


def test_latent_map_an_id_not_in_the_catalogue_gets_a_message_not_a_galaxy(at):
    """An id from another dataset (a link, a typo) is said to be missing; nothing else is shown for it."""
    at.text_input(key="galaxy").set_value("587000000000000000").run()
    assert_ok(at)
    assert any("No galaxy with id 587000000000000000" in w.value for w in at.warning)
    assert not neighbour_captions(at) and any("Click a galaxy" in i.value for i in at.info)


def test_latent_map_a_link_to_a_galaxy_opens_its_neighbours(sample):
    linked = open_page("latent_map", params={"galaxy": sample.ids[40], "k": "7"})
    assert linked.image[0].captions[0].split(" · ")[0] == sample.ids[40]
    assert len(neighbour_captions(linked)) == 7


def test_latent_map_neighbours_follow_the_sidebar_similarity(sample):
    """The map stays the model's latent; the gallery is whichever similarity the sidebar names."""
    galleries = {}
    for name in ("model latent", "raw pixels"):
        at = open_page("latent_map", params={"galaxy": sample.ids[40], "similarity": name})
        assert at.session_state["similarity"] == name
        assert any(name in s.value for s in at.subheader)
        galleries[name] = [c.split()[1] for c in neighbour_captions(at)]
    assert galleries["model latent"] != galleries["raw pixels"]


def test_latent_map_box_selection_shows_exactly_the_galaxies_inside(sample):
    """A box (as a link carries it, or as drawn): the counts, the first page and the CSV are the
    galaxies whose map points lie inside it."""
    from galaxy_vae import selection

    at = open_page("latent_map", params={"select": "box:-0.5,0.5,-0.5,0.5"})
    cat = at.session_state["_session"].catalogue
    inside = selection.rows_inside(cat.map_xy, selection.parse("box:-0.5,0.5,-0.5,0.5"))
    x, y = cat.map_xy[inside].T
    assert len(inside) > 24 and (abs(x) <= 0.5).all() and (abs(y) <= 0.5).all()
    assert any(s.value == f"{len(inside):,} galaxies in the selection" for s in at.subheader)
    counts = at.dataframe[0].value
    assert counts["selected"].sum() == len(inside) and counts["catalogue"].sum() == len(sample)
    shown = sorted(c.split(" · ")[0] for img in at.image for c in img.captions)  # (the grid lists by column)
    assert shown == sorted(sample.ids[r] for r in inside[:24])  # the first page of the rows inside
    at.number_input(key="selection_page").set_value(2).run()
    assert sorted(c.split(" · ")[0] for img in at.image for c in img.captions) == sorted(sample.ids[inside[24:48]])
    at.toggle(key="more_like_these").set_value(True).run()
    assert_ok(at)
    more = [c.split()[1] for c in neighbour_captions(at)]
    assert len(more) == 12 and not set(more) & {sample.ids[r] for r in inside}


def test_latent_map_real_galaxies_behind_the_map(at, sample):
    at.selectbox(key="background").set_value("real").run()
    assert_ok(at)
    images = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["images"]
    assert len(images) == 1 and images[0]["source"].startswith("data:image/jpeg;base64,")


def test_latent_map_settings_survive_a_visit_to_another_page(at):
    """k, the toggles and the sidebar's choices come back as the user left them after a visit to
    another page (persist_state="session"; the sidebar is drawn by the entry file on every page)."""
    at.slider(key="k").set_value(5).run()
    at.toggle(key="framing").set_value(False).run()
    at.switch_page("pages/generator.py").run()
    assert_ok(at)
    at.slider(key="gen_frames").set_value(9).run()
    at.switch_page("pages/latent_map.py").run()
    assert_ok(at)
    assert at.slider(key="k").value == 5 and at.toggle(key="framing").value is False
    at.switch_page("pages/generator.py").run()
    assert at.slider(key="gen_frames").value == 9


def test_latent_map_background_of_decoded_galaxies_is_a_light_image_layer(at):
    """The optional background is one JPEG layer under the points: a few hundred kB, where a PNG
    of the same noisy 1,536 px grid weighed ~4 MB in every figure update."""
    at.selectbox(key="background").set_value("decoded").run()
    assert_ok(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    images = spec["layout"]["images"]
    assert len(images) == 1 and images[0]["source"].startswith("data:image/jpeg;base64,")
    assert images[0]["layer"] == "below" and len(images[0]["source"]) < 1_500_000
    at.selectbox(key="background").set_value("none").run()
    assert "images" not in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]


def test_latent_map_warns_when_an_upload_lies_outside_the_catalogue(at, sample):
    """A bright checkerboard is nothing like an SDSS cutout: warned. A catalogue galaxy: not."""

    def png(array):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    board = (np.indices((128, 128)).sum(axis=0) // 8 % 2 * 255).astype(np.uint8)
    upload(at, png(np.stack([board] * 3, -1)), "board.png", "image/png")
    assert any("outside what the catalogue contains" in w.value for w in at.warning)
    upload(at, png(sample.images[100]), "galaxy.png", "image/png")
    assert not any("outside what the catalogue contains" in w.value for w in at.warning)
    assert len(neighbour_captions(at)) == at.slider(key="k").value


@pytest.mark.parametrize("invariant", [False, True])
def test_latent_map_an_upload_is_encoded_once_per_run(milky_way_path, monkeypatch, invariant):
    """One look-up serves the neighbours, the star on the map, the reconstruction and the outlier
    check: one model call on the upload (its 8 views together when invariant), one decode."""
    name = "model latent, any rotation or mirror image" if invariant else "model latent"
    at = open_page("latent_map", params={"similarity": name})
    upload(at, milky_way_path)  # first run: builds the catalogue and its outlier thresholds
    calls = {"embed": [], "decode": 0}
    embed = ModelSpace.embed

    def counting_embed(self, images, progress=False):
        calls["embed"].append(len(images))
        return embed(self, images, progress)

    def counting_reconstruct(*args, **kwargs):
        calls["decode"] += 1
        return reconstruct_from(*args, **kwargs)

    reconstruct_from = catalogue_module.reconstruct_from
    monkeypatch.setattr(ModelSpace, "embed", counting_embed)
    monkeypatch.setattr(catalogue_module, "reconstruct_from", counting_reconstruct)
    at.run()  # a rerun with the upload in place, e.g. after moving k
    assert_ok(at)
    assert calls == {"embed": [8 if invariant else 1], "decode": 1}
    assert len(neighbour_captions(at)) == 12


def test_unusual_page_ranks_by_distance_to_the_tenth_neighbour_or_reconstruction(sample):
    at = open_page("unusual", params={"unusual_n": "30"})
    sim = at.session_state["_session"].similarity
    expected = sim.catalogue.neighbour_distance(10).argsort()[::-1][:30]
    shown = sorted(c.split(" · ")[0].split(" ", 1)[1] for img in at.image for c in img.captions)
    assert shown == sorted(sample.ids[expected[:24]]) and at.get("download_button")
    at.selectbox(key="unusual_score").set_value("recon").run()
    assert_ok(at)
    worst = at.session_state["_session"].catalogue.recon_errors.argsort()[::-1][:24]
    assert sorted(c.split(" · ")[0].split(" ", 1)[1] for img in at.image for c in img.captions) == \
        sorted(sample.ids[worst])
