"""AppTest of the Milky Way challenge page: renders on NASA's Milky Way and on an upload, ranks the
catalogue under every similarity identically on every run, states the answer, generates the same
lookalikes for the same seed, recovers a padded catalogue galaxy through automatic framing, keeps
its state in the URL, and handles a missing Milky Way picture, bad uploads and non-VAE models.

The page runs with a seeded, untrained GalaxyVAE and a 64-D dense autoencoder written to a
temporary checkpoint folder (what is tested is the wiring, not image quality), plus every
shipped checkpoint when present. Images are compared by their media URL, which Streamlit derives
from a hash of the encoded bytes: equal URL <=> equal image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from apptest import assert_ok
from apptest import open_page as open_app
from streamlit.testing.v1 import AppTest
from uploads import BAD_UPLOADS, galaxy_jpeg, padded_png

from galaxy_vae import app
from galaxy_vae import lookalikes as mw
from galaxy_vae.app import cache as app_cache
from galaxy_vae.captions import lookalike_captions
from galaxy_vae.checkpoints import list_checkpoints, save_checkpoint
from galaxy_vae.cutouts import prepare_upload
from galaxy_vae.extent import catalogue_extent, measure_extents
from galaxy_vae.models import build_model
from galaxy_vae.paths import CHECKPOINTS_ENV, DEFAULT_CHECKPOINT_NAME, DENSE_AE_NAME, MILKY_WAY_ENV
from galaxy_vae.sky import CATALOGUE_SKY, border_sky

VAE, DENSE = "galaxy_vae_seeded.safetensors", DENSE_AE_NAME
KEYS = ["latent", "dense_ae", "invariant", "pixels"]
SHIPPED = [p.name for p in list_checkpoints() if not p.name.startswith("_")]
DEFAULT_VIEW = {"top_k": 8, "answer": "latent",  # the first similarity (no encoder in these checkpoints)
                "temperature": mw.DEFAULT_TEMPERATURE,
                "samples": mw.DEFAULT_SAMPLES, "seed": 0}


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, sample):
    """A seeded VAE (decoder scaled up so that latents show) and a 64-D dense AE; the page finds both."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    vae = build_model("galaxy_vae")
    with torch.no_grad():
        for param in vae.dec_fc.parameters():
            param.mul_(30.0)
    save_checkpoint(folder / VAE, vae, {"class_names": list(sample.class_names)})
    torch.manual_seed(64)
    save_checkpoint(folder / DENSE, build_model("dense_ae", {"code_size": 64}), {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CHECKPOINTS_ENV, str(folder))
        mp.delenv(MILKY_WAY_ENV, raising=False)
        yield folder


def open_page(checkpoint: str = VAE, params: dict | None = None) -> AppTest:
    return open_app("milky_way", model=checkpoint, params=params)


def view(at: AppTest) -> dict:
    """The values of the page's URL-bound settings."""
    return {"top_k": at.slider(key="top_k").value, "answer": at.selectbox(key="answer").value,
            "temperature": at.slider(key="temperature").value, "samples": at.slider(key="samples").value,
            "seed": at.number_input(key="seed").value}


@pytest.fixture
def at(checkpoint_dir, sample_path):
    return open_page()


def captions(at: AppTest, start: str) -> list[str]:
    return [c for img in at.image for c in img.captions if c.startswith(start)]


def ranking(at: AppTest) -> dict[str, list[str]]:
    """{similarity key: [ids in rank order]} from captions "key #rank id · class · d=..."."""
    out = {}
    for c in captions(at, ""):
        key, rank, *rest = c.split()
        if rank.startswith("#") and key in KEYS:
            out.setdefault(key, []).append((int(rank[1:]), rest[0]))
    return {k: [i for _, i in sorted(v)] for k, v in out.items()}


def answer_text(at: AppTest) -> str:
    found = [m.value for m in at.markdown if "chosen as" in m.value]
    assert len(found) == 1, [m.value for m in at.markdown]
    return found[0]


def urls(at: AppTest, start: str) -> list[str]:
    return [img.value[i] for img in at.image for i, c in enumerate(img.captions) if c.startswith(start)]


def test_page_milky_way_renders_on_the_milky_way(at, sample):
    assert at.title[0].value == "Milky Way challenge"
    assert at.radio(key="query").value == "milky_way" and at.toggle(key="framing").value is False
    assert not at.error
    assert len(captions(at, "The picture as read")) == 1 and len(captions(at, "Framing off")) == 1
    assert len(captions(at, "Its reconstruction by the model")) == 1
    found = ranking(at)
    assert list(found) == KEYS and all(len(ids) == 8 for ids in found.values())
    text = answer_text(at)
    answer_id = text.split("**")[1]
    assert answer_id in sample.ids and "the nearest galaxy under GalaxyVAE latent (2-D)" in text
    assert captions(at, answer_id)  # its thumbnail, captioned with id and class
    assert any("Agreement" in m.value for m in at.markdown)
    assert len(captions(at, "lookalike ")) == 16 and len(captions(at, "nearest to ")) == 16
    assert len(at.get("download_button")) == 2  # ranking CSV, lookalike grid PNG
    assert view(at) == DEFAULT_VIEW


def test_page_milky_way_ranking_is_identical_across_runs(at):
    first, answer = ranking(at), answer_text(at)
    at.run()
    assert_ok(at)
    assert ranking(at) == first and answer_text(at) == answer


def test_page_milky_way_lookalike_sliders_do_not_rerank_the_catalogue(checkpoint_dir, sample_path, monkeypatch):
    """The ranking depends on the query, not on the lookalikes' temperature, count or seed."""
    calls = []
    monkeypatch.setattr(app_cache, "rank_all", lambda *a, **kw: calls.append(1) or mw.rank_all(*a, **kw))
    app_cache._ranking.clear()
    at = open_page()
    first = ranking(at)
    assert len(calls) == 1
    at.slider(key="temperature").set_value(0.5).run()
    at.slider(key="samples").set_value(8).run()
    assert_ok(at)
    assert len(calls) == 1 and ranking(at) == first
    at.toggle(key="framing").set_value(True).run()  # another query: ranked afresh
    assert len(calls) == 2


def test_page_milky_way_answer_follows_the_chosen_similarity(at):
    top = ranking(at)
    for key in KEYS:
        at.selectbox(key="answer").set_value(key).run()
        assert answer_text(at).split("**")[1].replace("\\", "") == top[key][0]


def test_page_milky_way_lookalikes_with_a_fixed_seed_are_identical(at):
    at.number_input(key="seed").set_value(5).run()
    first, nearest = urls(at, "lookalike "), captions(at, "nearest to ")
    at.run()
    assert urls(at, "lookalike ") == first and captions(at, "nearest to ") == nearest
    at.number_input(key="seed").set_value(6).run()
    assert urls(at, "lookalike ") != first
    at.number_input(key="seed").set_value(5).run()
    assert urls(at, "lookalike ") == first


def test_page_milky_way_lookalikes_are_the_library_samples(at, checkpoint_dir, sample, sample_path, milky_way_path):
    """What the page shows is sample_lookalikes of the prepared query, shown through app.gallery."""
    at.slider(key="temperature").set_value(1.5)
    at.slider(key="samples").set_value(4)
    at.run()
    session = app.Session((str(sample_path), app.stamp(sample_path), False),
                          (str(checkpoint_dir / VAE), app.stamp(checkpoint_dir / VAE)))
    query = prepare_upload(milky_way_path, sky=session.sky_level).stored
    looks = mw.sample_lookalikes(session.catalogue, query, 4, 1.5, 0)

    def script(images, caps):
        from galaxy_vae import app as page_app
        page_app.gallery(images, caps, columns=8, scale=2)

    caps = lookalike_captions(looks, sample)[0]
    expected = AppTest.from_function(script, args=(looks.images, caps)).run()
    assert sorted(captions(at, "lookalike ")) == sorted(caps)
    assert sorted(urls(at, "lookalike ")) == sorted(img.value[0] for img in expected.image)
    assert [c.split(": ")[1].split(" · ")[0] for c in sorted(captions(at, "nearest to "))] == \
        [str(sample.ids[r]) for r in looks.nearest]


def test_page_milky_way_on_an_upload(at):
    at.file_uploader(key="mw_upload").set_value(("galaxy.jpeg", galaxy_jpeg(), "image/jpeg")).run()
    assert_ok(at)
    assert at.radio(key="query").value == "upload"
    assert list(ranking(at)) == KEYS and answer_text(at)
    assert len(captions(at, "lookalike ")) == 16


def test_page_milky_way_framing_recovers_a_padded_catalogue_galaxy(at, sample):
    """A galaxy of typical size (and the catalogue's own sky level, so that matching the sky leaves
    it as it is), padded into a black frame 3x wider, is its own nearest pixel match once automatic
    framing is switched on, and is lost without it (the default)."""
    extents = measure_extents(sample.images)
    typical_sky = np.abs(border_sky(sample.images) - np.array(CATALOGUE_SKY)).max(axis=1) < 0.5
    row = int(np.argmin(np.where(typical_sky, np.abs(extents - catalogue_extent(sample.images)), np.inf)))
    at.file_uploader(key="mw_upload").set_value(("padded.png", padded_png(sample.images[row]), "image/png")).run()
    assert_ok(at)
    assert ranking(at)["pixels"][0] != sample.ids[row]
    assert len(captions(at, "Framing off")) == 1
    at.toggle(key="framing").set_value(True).run()
    assert ranking(at)["pixels"][0] == sample.ids[row]


def test_page_milky_way_a_link_reproduces_the_view(checkpoint_dir, sample_path):
    """The settings are bound to the URL (bind="query-params"): a link with them opens the same view in a
    new session. (That moving a widget rewrites the URL is checked in the browser: AppTest does not show it.)"""
    params = {"top_k": "5", "answer": "pixels", "temperature": "0.7", "seed": "3", "samples": "4", "framing": "false"}
    first = open_page(params=params)
    assert view(first) == {"top_k": 5, "answer": "pixels", "temperature": 0.7, "samples": 4, "seed": 3}
    assert first.toggle(key="framing").value is False
    assert "the nearest galaxy under pixels" in answer_text(first)
    assert all(len(ids) == 5 for ids in ranking(first).values()) and len(captions(first, "lookalike ")) == 4
    second = open_page(params=params)  # the copied URL, opened in a new session
    assert ranking(second) == ranking(first) and answer_text(second) == answer_text(first)
    assert urls(second, "lookalike ") == urls(first, "lookalike ")


def test_page_milky_way_bad_link_values_fall_back_to_defaults(checkpoint_dir, sample_path):
    at = open_page(params={"top_k": "999", "answer": "telepathy", "temperature": "hot", "query": "mars", "seed": "-4"})
    assert view(at) == DEFAULT_VIEW and at.radio(key="query").value == "milky_way"
    assert not at.error


def test_page_milky_way_without_the_picture_asks_for_an_upload(checkpoint_dir, sample_path, tmp_path, monkeypatch):
    monkeypatch.setenv(MILKY_WAY_ENV, str(tmp_path / "missing.webp"))
    at = open_page()
    assert at.radio(key="query").options == ["Your picture"]
    assert any("Upload a picture" in i.value and MILKY_WAY_ENV in i.value for i in at.info)
    assert not at.error and not ranking(at)
    at.file_uploader(key="mw_upload").set_value(("galaxy.jpeg", galaxy_jpeg(), "image/jpeg")).run()
    assert_ok(at)
    assert list(ranking(at)) == KEYS


@pytest.mark.parametrize("name", ["truncated", "text_named_png"])
def test_page_milky_way_bad_upload_is_an_error_not_a_traceback(at, name):
    at.file_uploader(key="mw_upload").set_value(BAD_UPLOADS[name]()).run()
    assert_ok(at)
    assert at.error and "Cannot use" in at.error[0].value
    assert any("Upload a picture" in i.value for i in at.info)
    at.file_uploader(key="mw_upload").set_value(None)
    at.radio(key="query").set_value("milky_way")
    at.run()
    assert list(ranking(at)) == KEYS


def test_page_milky_way_with_an_autoencoder_ranks_but_does_not_sample(checkpoint_dir, sample_path):
    at = open_page(DENSE)
    assert list(ranking(at)) == ["latent", "invariant", "pixels"]  # the dense AE is the model itself
    assert any("variational" in i.value for i in at.info)
    assert not captions(at, "lookalike ")


@pytest.mark.parametrize("checkpoint", SHIPPED)
def test_page_milky_way_with_shipped_checkpoint(checkpoint, sample_path, monkeypatch):
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)  # the real folder, even after the fixture's
    at = open_page(checkpoint)
    assert answer_text(at) and ranking(at)
    if checkpoint == DEFAULT_CHECKPOINT_NAME:
        assert len(captions(at, "lookalike ")) == 16


def test_page_milky_way_detail_variety_spreads_the_lookalikes(sample_path, monkeypatch):
    """With the detail VAE the page offers the detail variety (bound to the URL): at 0 the lookalikes
    come from the query's own narrow detail posterior and look alike; at the default they differ, and
    the caption says by how much, next to the query's real neighbours."""
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    spreads = {}
    for variety in ("0.0", "1.0"):
        at = open_page(DEFAULT_CHECKPOINT_NAME, params={"variety": variety})
        assert_ok(at)
        assert at.slider(key="variety").value == float(variety)
        said = [c.value for c in at.caption if "lookalikes differ from each other by" in c.value]
        assert len(said) == 1
        spreads[variety] = float(said[0].split("differ from each other by ")[1].split(" ")[0])
    assert spreads["1.0"] > 3 * spreads["0.0"], spreads
