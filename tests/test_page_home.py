"""AppTest of the home page: the challenge, the dataset with its counts and credits, a fixed grid of
sample galaxies per class, and links to the pages in a newcomer's order."""

from __future__ import annotations

import pytest
from apptest import ENTRY, assert_ok, open_page
from streamlit.testing.v1 import AppTest

from galaxy_vae.captions import esc

ORDER = ["Latent map", "Generator", "Milky Way challenge", "Unusual galaxies", "Models & quality"]


@pytest.fixture
def at(sample_path):
    return open_page("home")


def grid_captions(at: AppTest) -> list[str]:
    return [c for img in at.image for c in img.captions]


def test_home_renders_challenge_and_dataset(at, sample):
    assert not at.error
    text = " ".join(m.value for m in at.markdown)
    assert "Milky Way" in text and "latent" in text
    # dataset text is shown as typed: escaped in the Markdown source, so gz1_sample.h5 renders as itself
    assert esc("gz1_sample.h5") in text and f"{len(sample):,} galaxies" in text and esc(sample.source) in text
    counts = at.dataframe[0].value
    assert list(counts["class"]) == list(sample.class_names)
    assert dict(zip(counts["class"], counts["galaxies"])) == sample.counts()
    assert counts["galaxies"].sum() == len(sample) == 6664
    assert counts["share"].sum() == pytest.approx(1.0)


def test_home_credits_every_source(at):
    text = " ".join(m.value for m in at.markdown)
    for credit in ("SDSS", "Galaxy Zoo", "Lintott et al. 2008, 2011", "Galaxy10", "astroNN", "Leung & Bovy",
                   "NASA/GSFC Scientific Visualization Studio"):
        assert credit in text, credit


def test_home_grid_shows_a_few_real_galaxies_of_each_class(at, sample):
    """The same number of thumbnails per class, each a real galaxy of the class it is listed under."""
    assert [s.value.split(" (")[0] for s in at.subheader] == list(sample.class_names)
    ids = grid_captions(at)
    per_class, rest = divmod(len(ids), len(sample.class_names))
    assert rest == 0 and 3 <= per_class <= 8, len(ids)
    class_of = dict(zip(sample.ids, sample.labels))
    shown = [int(class_of[gid]) for gid in ids]  # KeyError: not a catalogue galaxy
    assert shown == [c for c in range(len(sample.class_names)) for _ in range(per_class)]
    assert len(set(ids)) == len(ids)  # no galaxy twice


def test_home_grid_is_the_same_on_every_run(at, sample):
    assert grid_captions(open_page("home")) == grid_captions(at)


def test_home_links_each_page_in_order(at):
    links = [e.proto for e in at.get("page_link")]
    assert [link.label.split("**")[1] for link in links] == ORDER
    assert all(link.page_script_hash and not link.external for link in links)


def test_home_is_the_default_page_of_the_app(sample_path):
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    assert_ok(at)
    assert at.title[0].value == "galaxy_vae" and at.get("page_link")
