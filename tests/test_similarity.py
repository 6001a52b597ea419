"""The shipped galaxy encoder: the default of every neighbour search, and what it finds (real sample
galaxies re-cut from their raw frames, NASA's Milky Way)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from apptest import open_page
from conftest import ROOT

from galaxy_vae import app
from galaxy_vae.catalogue import Catalogue, ModelSpace
from galaxy_vae.checkpoints import list_checkpoints, load_checkpoint
from galaxy_vae.configs import SIMILARITY_NAMES
from galaxy_vae.cutouts import prepare_upload
from galaxy_vae.data import stratified_split
from galaxy_vae.paths import default_checkpoint, encoder_checkpoint
from galaxy_vae.robustness import query_cutouts
from galaxy_vae.sky import catalogue_sky

ENCODER = encoder_checkpoint()
pytestmark = pytest.mark.skipif(ENCODER is None, reason="checkpoints/similarity.safetensors is not shipped")
SPIRALS = ("Spiral CW", "Spiral ACW")


@pytest.fixture(scope="module")
def encoder_catalogue(sample) -> Catalogue:
    return Catalogue(sample, ModelSpace(load_checkpoint(ENCODER)))


@pytest.fixture(scope="module")
def recut(sample, frames_path):
    """50 validation galaxies, every variant re-cut from the raw frame and prepared as an upload."""
    train, val = stratified_split(sample.labels, 0.2, 0)
    rows = val[np.linspace(0, len(val) - 1, 50).astype(int)]
    return rows, query_cutouts(sample.ids[rows], frames_path, sky=catalogue_sky(sample.images[train]))


# Targets the shipped encoder misses, measured (checkpoints/README.md): strict, so meeting one fails
# the run until its mark is removed.
MISSED_SELF = "measured 86 % (fov_150) and 86 % (fov_300) for the shipped encoder; the target is 90 %"
MISSED_MILKY_WAY = "measured 6 spirals among the Milky Way's 10 nearest for the shipped encoder; the target is 8"


@pytest.mark.parametrize("variant", ["rotated", pytest.param("fov_150", marks=pytest.mark.xfail(reason=MISSED_SELF,
                                                                                                strict=True)),
                                     pytest.param("fov_300", marks=pytest.mark.xfail(reason=MISSED_SELF, strict=True)),
                                     "sky"])
def test_a_recut_galaxy_finds_its_own_original(encoder_catalogue, recut, variant):
    """Rotated, zoomed in or out from its raw frame, or under a brighter sky, a galaxy is among the
    5 nearest of its own catalogue image for at least 90 % of 50 galaxies."""
    rows, queries = recut
    found = encoder_catalogue.query_images(queries[variant], 5).indices
    hits = (found == rows[:, None]).any(axis=1)
    assert hits.mean() >= 0.9, f"{variant}: own original among the 5 nearest for {hits.mean():.0%}"


@pytest.mark.xfail(reason=MISSED_MILKY_WAY, strict=True)
def test_the_milky_ways_neighbours_are_spirals(encoder_catalogue, sample, milky_way_path):
    query = prepare_upload(milky_way_path, sky=catalogue_sky(sample.images)).stored
    found = encoder_catalogue.look_up(query, 10).neighbours.indices[0]
    classes = [sample.class_names[sample.labels[r]] for r in found]
    assert sum(c in SPIRALS for c in classes) >= 8, classes


def test_the_app_searches_with_the_encoder_by_default(sample_path):
    model = list_checkpoints(generative=True)[0]
    assert model == default_checkpoint() and ENCODER not in list_checkpoints(generative=True)
    session = app.Session((str(sample_path), app.stamp(sample_path), False), (str(model), app.stamp(model)))
    assert session.similarity.key == "encoder" and session.similarity.name == SIMILARITY_NAMES["encoder"]
    assert [key for key, _ in session.spaces][:2] == ["encoder", "latent"]


def test_the_milky_way_page_answers_with_a_spiral(sample):
    at = open_page("milky_way")
    assert at.selectbox(key="answer").value == "encoder"
    text = next(m.value for m in at.markdown if "chosen as" in m.value)
    assert "the nearest galaxy under the galaxy encoder" in text or "galaxy encoder" in text
    answer = text.split("**")[1].replace("\\", "")
    assert sample.class_names[sample.labels[list(sample.ids).index(answer)]] in SPIRALS, text


def test_search_cli_uses_the_encoder_and_keeps_the_other_spaces(encoder_catalogue, sample, sample_path,
                                                                  milky_way_path):
    def search(*extra):
        out = subprocess.run([sys.executable, "-m", "galaxy_vae", "search", "--data", str(sample_path), "--image",
                              str(milky_way_path), "-k", "10", *extra], capture_output=True, text=True, cwd=ROOT,
                             check=True, timeout=600).stdout
        return out

    assert "similarity: galaxy encoder" in search()
    default = json.loads(search("--json"))[0]
    pixels = json.loads(search("--json", "--similarity", "pixels"))[0]
    latent = json.loads(search("--json", "--similarity", "latent"))[0]
    query = prepare_upload(milky_way_path, sky=catalogue_sky(sample.images)).stored
    expected = encoder_catalogue.look_up(query, 10).neighbours.indices[0]
    assert [r["id"] for r in default] == [str(sample.ids[r]) for r in expected]
    assert [r["id"] for r in pixels] != [r["id"] for r in default] != [r["id"] for r in latent]


@pytest.mark.parametrize("name", list(SIMILARITY_NAMES.values()))
def test_every_similarity_still_answers_on_the_map_page(sample, name):
    at = open_page("latent_map", params={"similarity": name, "galaxy": str(sample.ids[7])})
    neighbours = [c for img in at.image for c in img.captions if c.startswith("#")]
    assert len(neighbours) == 12, name
    assert any(name in c.value for c in at.caption), name
