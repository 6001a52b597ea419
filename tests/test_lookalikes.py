"""Milky Way challenge library: ranking under several similarities, the answer rule, agreement, the
temperature-truncated posterior sampling, lookalike grids, page state in the URL, and automatic
framing that recovers a catalogue galaxy padded into a larger frame.

Sampling, determinism and layout hold for any weights, so they use a seeded, untrained GalaxyVAE
built in memory on real sample galaxies. The self-retrieval test runs under the pixel baseline
always, and under every shipped checkpoint's latent when it is present (it needs trained weights).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from uploads import padded_png

from galaxy_vae import lookalikes as mw
from galaxy_vae import raster
from galaxy_vae.captions import describe_answer
from galaxy_vae.catalogue import Catalogue, ModelSpace, PixelSpace
from galaxy_vae.checkpoints import Checkpoint, load_checkpoint
from galaxy_vae.cutouts import prepare_upload
from galaxy_vae.errors import CheckpointError
from galaxy_vae.extent import catalogue_extent, measure_extents
from galaxy_vae.models import build_model
from galaxy_vae.paths import default_checkpoint, dense_ae_checkpoint
from galaxy_vae.search import knn

META_NAMES = ["E", "S-cw", "S-acw", "Edge", "?", "Merger"]  # distinct from the data's, to see which is used


def seeded(name: str, seed: int, **config) -> Checkpoint:
    """An untrained model; a VAE's decoder weights are scaled up, since an untrained decoder gives
    the same grey for every latent and determinism tests must be able to see a different latent."""
    torch.manual_seed(seed)
    model = build_model(name, config or None).eval()
    if name == "galaxy_vae":
        with torch.no_grad():
            for param in model.dec_fc.parameters():
                param.mul_(30.0)
    return Checkpoint(model, {"model": name, "class_names": META_NAMES}, None)


@pytest.fixture(scope="module")
def small(sample):
    """600 real galaxies, every class represented: catalogues build in well under a second."""
    return sample.take(np.linspace(0, len(sample) - 1, 600).astype(int))


@pytest.fixture(scope="module")
def vae_cat(small):
    return Catalogue(small, ModelSpace(seeded("galaxy_vae", 0)))


@pytest.fixture(scope="module")
def sims(small, vae_cat):
    dense = Catalogue(small, ModelSpace(seeded("dense_ae", 1, code_size=64)))
    return mw.similarities(vae_cat, Catalogue(small, PixelSpace()), dense)


@pytest.fixture(scope="module")
def milky_way(milky_way_path, sample):
    return prepare_upload(milky_way_path, framing="auto", target_fraction=catalogue_extent(sample.images)).stored


# --- temperature: the posterior truncated at T sigmas -------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 16, 64])
@pytest.mark.parametrize("radius", [0.3, 1.0, 2.5])
def test_lookalikes_ball_normal_stays_within_radius_and_reaches_it(d, radius):
    e = mw.ball_normal(np.random.default_rng(0), 2000, d, radius)
    norms = np.linalg.norm(e, axis=1)
    assert e.shape == (2000, d)
    assert norms.max() <= radius * (1 + 1e-12)
    assert norms.max() > 0.9 * radius  # the whole ball is used, not a shrunken one


def test_lookalikes_ball_normal_is_the_truncated_standard_normal():
    """In 2-D, P(|e| <= r | |e| <= T) = (1 - exp(-r^2/2)) / (1 - exp(-T^2/2)); directions uniform."""
    radius, n = 1.5, 40_000
    e = mw.ball_normal(np.random.default_rng(1), n, 2, radius)
    norms = np.linalg.norm(e, axis=1)
    for r in (0.5, 1.0, 1.3):
        expected = (1 - math.exp(-r * r / 2)) / (1 - math.exp(-radius * radius / 2))
        assert abs(np.mean(norms <= r) - expected) < 0.01, r
    angles = np.arctan2(e[:, 1], e[:, 0])
    quadrant_share = np.bincount(((angles + np.pi) // (np.pi / 2)).astype(int) % 4, minlength=4) / n
    assert np.all(np.abs(quadrant_share - 0.25) < 0.01)


def test_lookalikes_ball_normal_refuses_negative_temperature():
    with pytest.raises(ValueError, match="temperature"):
        mw.ball_normal(np.random.default_rng(0), 3, 2, -0.1)


@pytest.mark.parametrize("temperature", [0.0, 0.5, 1.0, 3.0])
def test_lookalikes_sampled_latents_lie_within_the_temperature_radius(vae_cat, milky_way, temperature):
    post = mw.posterior(vae_cat, milky_way)
    z = mw.sample_latents(post, 64, temperature, seed=3)
    r = mw.radii(post, z)
    assert z.shape == (64, 2) and z.dtype == np.float32
    assert np.all(r <= temperature + 1e-4)  # float32 rounding of z only
    if temperature == 0:
        assert np.allclose(z, post.mu.astype(np.float32))
    else:
        assert r.max() > 0.6 * temperature and len(np.unique(z, axis=0)) == 64


def test_lookalikes_radius_is_measured_in_each_axis_own_sigma():
    post = mw.Posterior(np.array([1.0, -2.0]), np.array([0.01, 3.0]))  # very unequal axes
    z = mw.sample_latents(post, 500, 2.0, seed=0).astype(np.float64)
    assert np.all(np.abs(z[:, 0] - 1.0) <= 0.02 + 1e-6) and np.all(np.abs(z[:, 1] + 2.0) <= 6.0 + 1e-5)
    assert np.abs(z[:, 1] + 2.0).max() > 4.0  # the wide axis is explored, the narrow one barely


def test_lookalikes_generation_with_fixed_seed_is_identical(vae_cat, milky_way):
    a = mw.sample_lookalikes(vae_cat, milky_way, 12, 1.5, seed=7)
    b = mw.sample_lookalikes(vae_cat, milky_way, 12, 1.5, seed=7)
    c = mw.sample_lookalikes(vae_cat, milky_way, 12, 1.5, seed=8)
    for field in ("latents", "images", "nearest", "distances", "predicted", "probability"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert not np.array_equal(a.latents, c.latents) and not np.array_equal(a.images, c.images)
    assert raster.grid_png(a.images) == raster.grid_png(b.images)


def test_lookalikes_nearest_galaxy_and_class_head(vae_cat, milky_way):
    looks = mw.sample_lookalikes(vae_cat, milky_way, 10, 2.0, seed=0)
    dist, idx = knn(looks.latents, vae_cat.vectors, 1)
    assert np.array_equal(looks.nearest, idx[:, 0]) and np.allclose(looks.distances, dist[:, 0], atol=1e-6)
    assert looks.images.shape == (10, 64, 64, 3) and looks.images.dtype == np.uint8
    with torch.inference_mode():
        logits = vae_cat.model.classify(torch.from_numpy(looks.latents))
    assert np.array_equal(looks.predicted, logits.argmax(dim=1).numpy())
    assert np.all((looks.probability > 1 / 6) & (looks.probability <= 1))
    assert looks.class_names == tuple(META_NAMES)  # the checkpoint's names, not the dataset's


def test_lookalikes_need_a_variational_model(small, milky_way):
    dense = Catalogue(small, ModelSpace(seeded("dense_ae", 1, code_size=64)))
    with pytest.raises(CheckpointError, match="variational"):
        mw.sample_lookalikes(dense, milky_way)


# --- ranking, answer, agreement -----------------------------------------------------------------

def toy_ranking(lists) -> mw.Ranking:
    indices = np.array(lists, dtype=np.int64)
    return mw.Ranking(tuple(f"s{i}" for i in range(len(lists))), tuple(f"S{i}" for i in range(len(lists))),
                      indices, np.tile(np.arange(indices.shape[1], dtype=float), (len(lists), 1)))


def test_lookalikes_consensus_prefers_agreement_over_one_first_place():
    # 7 is first under one similarity only; 3 is second under all three
    ranking = toy_ranking([[7, 3, 1, 2], [4, 3, 5, 6], [8, 3, 9, 0]])
    answer = mw.choose_answer(ranking)
    assert answer.row == 3 and answer.by == "consensus"
    assert answer.ranks == {"s0": 2, "s1": 2, "s2": 2} and answer.score == 6
    assert mw.choose_answer(ranking, "s0").row == 7
    assert mw.choose_answer(ranking, "s0").ranks == {"s0": 1, "s1": None, "s2": None}  # beyond depth 4
    assert mw.choose_answer(ranking, "s0").score == 1 + 5 + 5


def test_lookalikes_consensus_ties_go_to_the_first_similarity():
    ranking = toy_ranking([[2, 1], [1, 2]])  # both sum to 3
    assert mw.choose_answer(ranking).row == 2
    with pytest.raises(ValueError, match="answer rule"):
        mw.choose_answer(ranking, "nonsense")


def test_lookalikes_agreement_is_top_k_overlap():
    ranking = toy_ranking([[1, 2, 3, 4], [2, 1, 9, 8], [5, 6, 7, 4]])
    agree = mw.agreement(ranking, 2)
    assert np.allclose(agree["overlap"], [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert agree["mean_overlap"] == pytest.approx(1 / 3) and agree["in_all"] == []
    assert mw.agreement(toy_ranking([[1, 2], [2, 1]]), 2)["in_all"] == [1, 2]


def test_lookalikes_ranking_is_identical_across_runs_and_matches_each_catalogue(sims, milky_way):
    assert [s.key for s in sims] == ["latent", "dense_ae", "invariant", "pixels"]
    a, b = mw.rank_all(milky_way, sims, depth=50), mw.rank_all(milky_way, sims, depth=50)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.distances, b.distances)
    assert a.indices.shape == (4, 50)
    for s, sim in enumerate(sims):
        own = sim.catalogue.query_images(milky_way, 50, invariant=sim.invariant)
        assert np.array_equal(a.indices[s], own.indices[0])
        assert np.all(np.diff(a.distances[s]) >= 0)
    assert mw.choose_answer(a) == mw.choose_answer(b)


def test_lookalikes_ranking_rows_and_plain_answer(sims, small, milky_way):
    ranking = mw.rank_all(milky_way, sims)
    answer = mw.choose_answer(ranking)
    rows = mw.ranking_rows(ranking, small, 5, answer)
    assert len(rows) == 4 * 5
    assert set(rows[0]) == {"similarity", "similarity_label", "rank", "index", "id", "label", "class_name",
                            "distance", "answer"}
    assert [r["rank"] for r in rows if r["similarity"] == "pixels"] == [1, 2, 3, 4, 5]
    assert all(r["answer"] == (r["index"] == answer.row) for r in rows)
    text = describe_answer(answer, ranking, small, 5)
    assert str(small.ids[answer.row]) in text and small.class_names[small.labels[answer.row]] in text
    assert "summed rank" in text and text.count(" under ") == 4


# --- automatic framing recovers a catalogue galaxy padded into a larger frame --------------------

@pytest.fixture(scope="module")
def typical_rows(sample):
    """The 5 galaxies whose extent is closest to the catalogue's: framing should give them back their
    own catalogue framing (a galaxy of another size is, rightly, rescaled to the typical size)."""
    target = catalogue_extent(sample.images)
    extents = measure_extents(sample.images)
    return target, np.argsort(np.abs(extents - target))[:5]


def test_lookalikes_framing_of_padded_galaxy_finds_itself_in_pixels(sample, typical_rows):
    target, rows = typical_rows
    pixels = Catalogue(sample, PixelSpace())
    for row in rows:
        query = prepare_upload(padded_png(sample.images[row]), framing="auto", target_fraction=target, sky=None)
        assert "padded" not in query.notes[-1]  # the black frame is cropped away, not kept
        assert pixels.query_images(query.stored, 1).indices[0, 0] == row
        unframed = prepare_upload(padded_png(sample.images[row]), framing="none", sky=None).stored
        assert pixels.query_images(unframed, 1).indices[0, 0] != row  # without framing it is lost


SHIPPED = [p for p in (default_checkpoint(), dense_ae_checkpoint()) if p and p.is_file()]


@pytest.mark.parametrize("checkpoint", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_lookalikes_framing_of_padded_galaxy_finds_itself_in_trained_latent(checkpoint, sample, typical_rows):
    """Needs trained weights: an untrained encoder maps every galaxy to nearly the same point."""
    target, rows = typical_rows
    cat = Catalogue(sample, ModelSpace(load_checkpoint(checkpoint)))
    queries = [prepare_upload(padded_png(sample.images[r]), framing="auto", target_fraction=target, sky=None).stored
               for r in rows]
    np.testing.assert_array_equal(cat.query_images(np.stack(queries), 1).indices[:, 0], rows)
