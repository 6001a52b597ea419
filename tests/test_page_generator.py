"""AppTest of the generator page: renders, decodes slider positions deterministically, decodes the
endpoints' latent means at t = 0 and t = 1, works in the 64-D autoencoder's latent, handles bad ids.

The page runs with two dense autoencoders written to a temporary checkpoint folder (2-D and the
seed's 64-D; seeded, untrained: what is tested is which latent gets decoded, not how good it looks),
plus every checkpoint shipped in checkpoints/. Images are compared by their media URL, which
Streamlit derives from a hash of the encoded bytes: equal URL <=> equal image.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from apptest import assert_ok
from apptest import open_page as open_app
from streamlit.testing.v1 import AppTest

from galaxy_vae import app, generate
from galaxy_vae.checkpoints import list_checkpoints, save_checkpoint
from galaxy_vae.configs import SIMILARITY_NAMES
from galaxy_vae.models import build_model
from galaxy_vae.paths import CHECKPOINTS_ENV
from galaxy_vae.raster import display_scale, png_bytes, upscale

SHIPPED = [p.name for p in list_checkpoints(generative=True) if not p.name.startswith("_")]


def shown_url(image: np.ndarray) -> str:
    """The URL st.image gives ``image`` shown as the page shows decoded galaxies (raster.png_bytes)."""
    def script(png):
        import streamlit as st
        st.image(png, output_format="PNG")
    return AppTest.from_function(script, args=(png_bytes(image),)).run().image[0].value[0]


def image_url(at: AppTest, caption_start: str) -> str:
    found = [img.value[0] for img in at.image if img.captions[0].startswith(caption_start)]
    assert len(found) == 1, [img.captions for img in at.image]
    return found[0]


def expected_url(at: AppTest, latent: np.ndarray, details: np.ndarray | None = None) -> str:
    """URL of what the page should show for ``latent`` (with ``details``, for a model with a detail
    code): Catalogue.decode, upscaled like the page."""
    session = app.Session(*at.session_state["gen_for"])
    image = session.catalogue.decode(np.asarray(latent, dtype=np.float32)[None], details)[0]
    return shown_url(upscale(image, display_scale(session.checkpoint.model.input_size)))


def page_details(at: AppTest, xy) -> np.ndarray | None:
    """The details the page's free decoding should use at map position ``xy`` (its mode and seed)."""
    cat = app.Session(*at.session_state["gen_for"]).catalogue
    if not cat.has_detail:
        return None
    return generate.point_details(cat, xy, at.radio(key="gen_detail_mode").value,
                                  int(at.number_input(key="gen_detail_seed").value), at.session_state["gen_anchor"])


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """A checkpoint folder with a 2-D and a 64-D dense autoencoder; the sidebar lists it."""
    folder = tmp_path_factory.mktemp("checkpoints")
    for name, code in (("dense_2d.safetensors", 2), ("dense_64d.safetensors", 64)):
        torch.manual_seed(code)
        save_checkpoint(folder / name, build_model("dense_ae", {"code_size": code}), {})
    torch.manual_seed(0)
    save_checkpoint(folder / "detail.safetensors", sensitive_detail_vae(), {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CHECKPOINTS_ENV, str(folder))
        yield folder


def sensitive_detail_vae():
    """A seeded, untrained detail VAE whose first decoder layer and prior are scaled up, so that other
    map points and other details decode to visibly other images (untrained, they barely differ)."""
    model = build_model("detail_vae", {"channels": [8, 8, 8, 8], "dec_channels": [16, 8, 8, 8], "hidden": 32,
                                       "detail_dim": 8, "prior_hidden": 16})
    with torch.no_grad():  # untrained, the encoder puts every galaxy within ~1e-4 of one point
        model.fc_mu.weight.mul_(3000.0)
        model.fc_mu.bias.zero_()
        model.dec_fc[0].weight.mul_(20.0)
        model.prior[-1].weight.mul_(5.0)
    return model.eval()


def open_page(checkpoint: str) -> AppTest:
    at = open_app("generator", model=checkpoint)
    assert at.session_state["gen_for"][1][0].endswith(checkpoint)
    return at


@pytest.fixture
def at(checkpoint_dir, sample_path):
    return open_page("dense_2d.safetensors")


def check_slider_decodes(at: AppTest) -> None:
    """Same slider value -> same image; another value -> another image; the image is the decoded point."""
    z1, z2 = at.slider(key="gen_z1"), at.slider(key="gen_z2")
    lo, hi, y = z1.min, z1.max, z2.value
    urls = []
    for x in (lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo), lo + 0.25 * (hi - lo)):
        at.slider(key="gen_z1").set_value(x).run()
        assert_ok(at)
        urls.append(image_url(at, "Decoded at ("))
    assert urls[0] == urls[2] != urls[1]
    session = app.Session(*at.session_state["gen_for"])
    xy = np.array([at.slider(key="gen_z1").value, y])
    assert urls[0] == expected_url(at, session.catalogue.projection.to_latent(xy), page_details(at, xy))


def check_endpoints(at: AppTest, a: int, b: int, method: str) -> None:
    """At t = 0 and t = 1 the page decodes exactly the endpoints' latent means."""
    data = app.Session(*at.session_state["gen_for"]).data
    at.text_input(key="gen_id_a").set_value(str(data.ids[a]))
    at.text_input(key="gen_id_b").set_value(str(data.ids[b]))
    at.radio(key="gen_method").set_value(method)
    at.run()
    assert tuple(at.session_state["gen_pair"]) == (a, b), at.error
    cat = app.Session(*at.session_state["gen_for"]).catalogue

    def nearest_caption() -> str:
        return [c for img in at.image for c in img.captions if c.startswith("Nearest real galaxy")][-1]

    for t, row in ((0.0, a), (1.0, b)):
        at.slider(key="gen_t").set_value(t).run()
        assert_ok(at)
        details = None if cat.details is None else cat.details[row][None]  # the path carries both codes
        assert image_url(at, "Decoded at t =") == expected_url(at, cat.vectors[row], details), (t, method)
        name = nearest_caption().split("(", 1)[1].split("):", 1)[0]  # the similarity the page used
        sim = app.Session(*at.session_state["gen_for"], name).similarity
        if sim.key != "latent":  # another similarity searches the decoded image as an upload would be
            point = generate.path_between(cat, a, b, [t], method)
            rows, _ = generate.nearest_real(sim, cat, point, point.decode(cat))
            assert f"({sim.name}): {data.ids[rows[0]]} " in nearest_caption()
        else:  # in the map model's own latent an endpoint is its own nearest galaxy, at distance 0
            assert str(data.ids[row]) in nearest_caption() and nearest_caption().endswith("d=0.000")


def test_page_generator_renders(at, sample):
    assert at.title[0].value == "Generator"
    assert [t.label for t in at.tabs] == ["Free decoding", "Interpolation", "Manifold grid"]
    assert not at.error
    assert {s.key for s in at.slider} >= {"gen_z1", "gen_z2", "gen_t", "gen_frames", "gen_grid_n"}
    assert at.slider(key="gen_z1").label == "z₁"
    nearest = [c for img in at.image for c in img.captions if c.startswith("Nearest real galaxy")]
    assert nearest and any(name in nearest[0] for name in sample.class_names)
    strip = [c for img in at.image for c in img.captions if c.startswith("t = ")]
    assert strip == [f"t = {t:.2f}" for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    assert any(c.startswith("Decoded on an 8 x 8 grid") for img in at.image for c in img.captions)
    assert len(at.get("download_button")) == 4  # decoded image, strip PNG, strip GIF, grid


def test_page_generator_slider_decodes_deterministically(at):
    check_slider_decodes(at)


@pytest.mark.parametrize("method", ["linear", "spherical"])
def test_page_generator_interpolation_ends_decode_the_latent_means(at, sample, method):
    check_endpoints(at, int(np.flatnonzero(sample.labels == 1)[0]), int(np.flatnonzero(sample.labels == 0)[5]), method)


def test_page_generator_unknown_id_is_an_error_not_a_traceback(at):
    before = tuple(at.session_state["gen_pair"])
    at.text_input(key="gen_id_a").set_value("not-a-galaxy").run()
    assert_ok(at)
    assert at.error and "No galaxy with id 'not-a-galaxy'" in at.error[0].value
    assert tuple(at.session_state["gen_pair"]) == before
    assert at.text_input(key="gen_id_a").value != "not-a-galaxy"  # the box shows the galaxy kept


def test_page_generator_random_pair_from_two_classes(at, sample):
    names = list(sample.class_names)
    at.selectbox(key="gen_class_a").set_value(names.index("Merger"))
    at.selectbox(key="gen_class_b").set_value(names.index("Edge-on"))
    at.number_input(key="gen_seed").set_value(7)
    at.button(key="gen_random").click().run()
    assert_ok(at)
    a, b = at.session_state["gen_pair"]
    assert (sample.class_names[sample.labels[a]], sample.class_names[sample.labels[b]]) == ("Merger", "Edge-on")
    assert at.text_input(key="gen_id_a").value == sample.ids[a]
    at.button(key="gen_random").click().run()
    assert tuple(at.session_state["gen_pair"]) == (a, b)  # same classes and seed, same pair


def test_page_generator_strip_and_grid_sizes_follow_their_sliders(at):
    at.slider(key="gen_frames").set_value(3)
    at.slider(key="gen_grid_n").set_value(5)
    at.run()
    assert_ok(at)
    assert [c for img in at.image for c in img.captions if c.startswith("t = ")] == ["t = 0.00", "t = 0.50", "t = 1.00"]
    assert any(c.startswith("Decoded on an 5 x 5 grid") for img in at.image for c in img.captions)


def test_page_generator_64d_autoencoder(checkpoint_dir, sample):
    """Sliders move along the two principal directions; interpolation runs in all 64 dimensions."""
    at = open_page("dense_64d.safetensors")
    assert at.slider(key="gen_z1").label == "PC 1" and at.slider(key="gen_z2").label == "PC 2"
    assert any("64-D" in c.value for c in at.caption)
    path_map = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]  # the interpolation path's map
    assert (path_map["xaxis"]["title"]["text"], path_map["yaxis"]["title"]["text"]) == ("PC 1", "PC 2")
    check_slider_decodes(at)
    check_endpoints(at, 11, int(np.flatnonzero(sample.labels == 2)[3]), "spherical")


@pytest.mark.parametrize("checkpoint", SHIPPED)
def test_page_generator_with_shipped_checkpoint(checkpoint, sample_path, monkeypatch):
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)  # the real folder, even after the fixture's
    at = open_page(checkpoint)
    check_slider_decodes(at)
    check_endpoints(at, 0, 1, "linear")


def test_page_generator_under_the_model_latent_names_each_endpoint_itself(sample_path, monkeypatch):
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    at = open_app("generator", params={"similarity": SIMILARITY_NAMES["latent"]})
    check_endpoints(at, 0, 1, "linear")
    assert "(model latent): " in [c for img in at.image for c in img.captions if c.startswith("Nearest real")][-1]


def test_page_generator_keeps_its_settings_across_pages(at):
    at.slider(key="gen_frames").set_value(4)
    at.slider(key="gen_z1").set_value(at.slider(key="gen_z1").max)
    at.run()
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/generator.py").run()
    assert_ok(at)
    assert at.slider(key="gen_frames").value == 4 and at.slider(key="gen_z1").value == at.slider(key="gen_z1").max


@pytest.fixture
def detail_at(checkpoint_dir, sample_path):
    return open_page("detail.safetensors")


def _decoded_at(at: AppTest, x: float) -> str:
    at.slider(key="gen_z1").set_value(x).run()
    assert_ok(at)
    return image_url(at, "Decoded at (")


def test_page_generator_detail_model_decodes_what_it_says(detail_at):
    at = detail_at
    assert at.radio(key="gen_detail_mode").options == list(generate.DETAIL_MODES)
    for mode in generate.DETAIL_MODES:
        at.radio(key="gen_detail_mode").set_value(mode).run()
        check_slider_decodes(at)
    check_endpoints(at, 3, 9, "linear")


def test_page_generator_keep_details_same_slider_same_image(detail_at):
    at = detail_at
    z1 = at.slider(key="gen_z1")
    lo, hi = z1.min, z1.max
    at.radio(key="gen_detail_mode").set_value("keep details").run()
    near, far = lo + 0.3 * (hi - lo), hi - 0.3 * (hi - lo)
    first, other, again = (_decoded_at(at, x) for x in (near, far, near))
    assert first == again != other
    anchor = at.session_state["gen_anchor"]
    cat = app.Session(*at.session_state["gen_for"]).catalogue
    kept = generate.point_details(cat, (hi, 0.0), "keep details", int(at.number_input(key="gen_detail_seed").value),
                                  anchor)
    assert np.array_equal(kept, generate.point_details(cat, anchor, "new details", 0))  # chosen where anchored
    at.button(key="gen_new_details").click().run()  # other details, kept from here on
    assert at.number_input(key="gen_detail_seed").value == 1 and image_url(at, "Decoded at (") != first


def test_page_generator_new_details_same_seed_same_image(detail_at):
    at = detail_at
    z1 = at.slider(key="gen_z1")
    x = z1.min + 0.6 * (z1.max - z1.min)
    at.radio(key="gen_detail_mode").set_value("new details")
    at.number_input(key="gen_detail_seed").set_value(5)
    seed5 = _decoded_at(at, x)
    at.number_input(key="gen_detail_seed").set_value(6).run()
    seed6 = image_url(at, "Decoded at (")
    at.number_input(key="gen_detail_seed").set_value(5).run()
    assert image_url(at, "Decoded at (") == seed5 != seed6


def test_page_generator_link_reproduces_the_view(checkpoint_dir, sample):
    a, b = int(np.flatnonzero(sample.labels == 3)[0]), int(np.flatnonzero(sample.labels == 1)[2])
    first = open_page("detail.safetensors")
    z1 = first.slider(key="gen_z1")
    x = round(z1.min + 0.7 * (z1.max - z1.min), 3)
    params = {"gen_z1": str(x), "gen_detail_mode": "new details", "gen_detail_seed": "9",
              "gen_id_a": str(sample.ids[a]), "gen_id_b": str(sample.ids[b]), "gen_t": "0.25"}
    at = open_app("generator", model="detail.safetensors", params=params)
    assert not at.warning
    assert at.slider(key="gen_z1").value == pytest.approx(x) and at.number_input(key="gen_detail_seed").value == 9
    assert tuple(at.session_state["gen_pair"]) == (a, b) and at.slider(key="gen_t").value == pytest.approx(0.25)
    again = open_app("generator", model="detail.safetensors", params=params)
    assert image_url(again, "Decoded at (") == image_url(at, "Decoded at (")
    assert image_url(again, "Decoded at t =") == image_url(at, "Decoded at t =")


def test_page_generator_bad_link_values_fall_back_with_a_note(checkpoint_dir, sample):
    params = {"gen_z1": "not-a-number", "gen_detail_seed": "-4", "gen_detail_mode": "sharper", "gen_id_a": "nope",
              "gen_t": "7"}
    at = open_app("generator", model="detail.safetensors", params=params)
    notes = " ".join(w.value for w in at.warning)
    for key in params:
        assert f"{key}=" in notes, (key, notes)
    default = open_page("detail.safetensors")
    assert at.slider(key="gen_z1").value == default.slider(key="gen_z1").value
    assert at.number_input(key="gen_detail_seed").value == 0 and at.slider(key="gen_t").value == 0.5
    assert at.radio(key="gen_detail_mode").value == generate.DETAIL_MODES[0]
    assert tuple(at.session_state["gen_pair"]) == tuple(default.session_state["gen_pair"])
