"""Neighbour search: exact against brute force in every space, invariant mode, table schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galaxy_vae.data import model_view
from galaxy_vae.search import NeighbourIndex, Neighbours, knn, neighbour_table, pixel_features

# The most elongated Edge-on galaxy of the sample (largest ratio of the principal second moments
# of its 64x64 crop): rotated 90 degrees it no longer looks like itself to a plain pixel search.
ELONGATED_EDGE_ON = "588017949350035590"


def brute_views(view_latents: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference for the invariant query: (Q, V, d) -> min over views of every distance, top k."""
    diff = view_latents[:, :, None, :].astype(np.float64) - base[None, None].astype(np.float64)
    best = np.sqrt((diff ** 2).sum(-1)).min(axis=1)  # (Q, N)
    idx = np.argsort(best, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(best, idx, axis=1), idx


def dihedral(image: np.ndarray) -> np.ndarray:
    """The 8 rotations/reflections of one (S, S, 3) image -> (8, S, S, 3)."""
    views = []
    for turns in range(4):
        rotated = np.rot90(image, turns)
        views += [rotated, rotated[:, ::-1]]
    return np.stack(views)


@pytest.fixture(scope="module")
def pixel_subset(sample):
    """Pixel features of every Edge-on galaxy plus every 5th other one (~2,100 rows, ~100 MB)."""
    edge_on = sample.class_names.index("Edge-on")
    rows = np.union1d(np.flatnonzero(sample.labels == edge_on), np.arange(0, len(sample), 5))
    return rows, pixel_features(sample.images[rows])


@pytest.mark.parametrize("dim,n,dtype", [(2, 5000, np.float64), (2, 100, np.float32),
                                         (64, 3000, np.float32), (12288, 400, np.float32)])
def test_search_index_equals_brute_force(dim, n, dtype):
    rng = np.random.default_rng(dim + n)
    base = rng.normal(size=(n, dim)).astype(dtype)
    queries = rng.normal(size=(25, dim)).astype(dtype)
    want_d, want_i = knn(queries, base, 12)
    got = NeighbourIndex(base).query(queries, 12)
    assert got.indices.shape == got.distances.shape == (25, 12)
    np.testing.assert_array_equal(got.indices, want_i)
    np.testing.assert_allclose(got.distances, want_d, rtol=1e-5, atol=1e-5)


def test_search_index_picks_structure_by_dimension_and_size():
    rng = np.random.default_rng(0)
    assert NeighbourIndex(rng.normal(size=(21785, 2))).method == "kdtree"
    assert NeighbourIndex(rng.normal(size=(2000, 64))).method == "brute"
    assert NeighbourIndex(rng.normal(size=(50, 2))).method == "brute"


def test_search_kdtree_and_brute_agree_including_ties():
    rng = np.random.default_rng(1)
    base = np.round(rng.normal(size=(3000, 2)), 1)  # a coarse lattice: many exact ties and duplicates
    queries = np.round(rng.normal(size=(40, 2)), 1)
    tree = NeighbourIndex(base, method="kdtree").query(queries, 10)
    brute = NeighbourIndex(base, method="brute").query(queries, 10)
    np.testing.assert_allclose(tree.distances, brute.distances, atol=1e-12)
    # distances ascending, equal distances in row order
    for d, i in zip(tree.distances, tree.indices):
        assert np.all(np.diff(d) >= 0)
        assert all(i[j] < i[j + 1] for j in range(len(i) - 1) if d[j] == d[j + 1])


def test_search_index_equals_brute_force_on_sample_pixels(sample, pixel_subset):
    rows, features = pixel_subset
    rows, features = rows[:800], features[:800]  # the float64 reference copy stays small
    outside = np.setdiff1d(np.arange(len(sample)), rows)[:20]  # real galaxies not in the index
    queries = pixel_features(sample.images[outside])
    want_d, want_i = knn(queries, features, 12)
    got = NeighbourIndex(features).query(queries, 12)
    np.testing.assert_array_equal(got.indices, want_i)
    np.testing.assert_allclose(got.distances, want_d, rtol=1e-5)
    assert np.all(got.distances[:, 0] > 0)


def test_search_single_query_and_k_larger_than_index():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(30, 2))
    got = NeighbourIndex(base).query(base[7], 100)
    assert got.indices.shape == (1, 30)
    assert got.indices[0, 0] == 7 and got.distances[0, 0] == 0
    assert sorted(got.indices[0]) == list(range(30))


@pytest.mark.parametrize("dim,n", [(2, 21785), (64, 2000)])
def test_search_query_views_equals_brute_force(dim, n):
    rng = np.random.default_rng(dim)
    base = rng.normal(size=(n, dim))
    views = rng.normal(size=(6, 8, dim))
    want_d, want_i = brute_views(views, base, 12)
    got = NeighbourIndex(base).query_views(views, 12)
    np.testing.assert_array_equal(got.indices, want_i)
    np.testing.assert_allclose(got.distances, want_d, rtol=1e-9, atol=1e-9)
    one = NeighbourIndex(base).query_views(views[0], 12)  # (V, d) -> one query
    np.testing.assert_array_equal(one.indices, want_i[:1])


def test_search_invariant_mode_finds_rotated_and_mirrored_galaxy(sample, pixel_subset):
    rows, features = pixel_subset
    galaxy = int(np.flatnonzero(sample.ids == ELONGATED_EDGE_ON)[0])
    assert sample.class_names[sample.labels[galaxy]] == "Edge-on"
    position = int(np.flatnonzero(rows == galaxy)[0])
    index = NeighbourIndex(features)
    crop = model_view(sample.images[galaxy])  # (64, 64, 3) as the models see it
    assert index.query(pixel_features(crop[None]), 1).indices[0, 0] == position  # itself, untouched
    plain_hits = []
    for transformed in (np.rot90(crop), crop[:, ::-1], np.rot90(crop, 3)):
        invariant = index.query_views(pixel_features(dihedral(transformed)), 5)
        assert invariant.indices[0, 0] == position
        assert invariant.distances[0, 0] < 1e-4 < invariant.distances[0, 1]
        plain_hits.append(index.query(pixel_features(transformed[None]), 5).indices[0, 0] == position)
    assert not all(plain_hits), "the plain query should miss at least one transformed copy"


def test_search_pixel_features_are_model_inputs(sample):
    feats = pixel_features(sample.images[:10])
    assert feats.shape == (10, 64 * 64 * 3) and feats.dtype == np.float32
    expected = model_view(sample.images[:10]).reshape(10, -1) / 255.0
    np.testing.assert_allclose(feats, expected, atol=1e-7)
    assert 0.0 <= feats.min() and feats.max() <= 1.0


def test_search_neighbour_table_schema(sample):
    colours = sample.images[:, 30:39, 30:39].mean(axis=(1, 2))  # (N, 3) colour of each galaxy's core
    found = NeighbourIndex(colours).query(colours[[3, 40]], 6)
    table = neighbour_table(found, sample, row=1)
    assert [r["rank"] for r in table] == [1, 2, 3, 4, 5, 6]
    for r in table:
        assert set(r) == {"rank", "index", "id", "label", "class_name", "distance"}
        assert type(r["index"]) is int and type(r["label"]) is int and type(r["distance"]) is float
        assert r["id"] == sample.ids[r["index"]] and isinstance(r["id"], str)
        assert r["class_name"] == sample.class_names[sample.labels[r["index"]]]
    assert table[0]["index"] == 40 and table[0]["distance"] == 0.0
    assert [r["distance"] for r in table] == sorted(r["distance"] for r in table)
    assert json.loads(json.dumps(table)) == table


def test_search_knn_ties_keep_lower_index():
    base = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [5.0, 5.0]])
    d, i = knn(np.zeros((1, 2)), base, 3)
    assert i.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(d, [[1.0, 1.0, 1.0]])
    got = NeighbourIndex(base).query(np.zeros(2), 3)
    assert isinstance(got, Neighbours) and got.indices.tolist() == [[0, 1, 2]]


def test_search_pixel_index_matches_brute_force_without_a_float_copy(sample):
    """PixelIndex (pixels made block by block from the uint8 images) gives the brute-force
    NeighbourIndex's answers over the real sample's pixel features, plain and over 8 views."""
    from galaxy_vae import search as search_module
    from galaxy_vae.search import PixelIndex, PixelRows
    from galaxy_vae.symmetry import dihedral_views

    images = sample.images[:1500]
    feats = pixel_features(images)
    brute, lazy = NeighbourIndex(feats), PixelIndex(images)
    assert np.allclose(lazy.squared_norms, np.einsum("nd,nd->n", feats, feats), rtol=1e-5)
    rows = PixelRows(images)
    np.testing.assert_array_equal(rows[[3, 7]], feats[[3, 7]])
    np.testing.assert_array_equal(rows[5], feats[5])
    old = search_module.PIXEL_BLOCK
    search_module.PIXEL_BLOCK = 256  # several blocks, merged
    try:
        got, want = lazy.query(feats[[0, 400, 1499]], 12), brute.query(feats[[0, 400, 1499]], 12)
        views = pixel_features(dihedral_views(sample.images[2000:2001])[:, 0])  # (8, d): a galaxy not indexed
        got_v, want_v = lazy.query_views(views, 10), brute.query_views(views, 10)
    finally:
        search_module.PIXEL_BLOCK = old
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.distances, want.distances, rtol=1e-9)
    np.testing.assert_array_equal(got_v.indices, want_v.indices)
    np.testing.assert_allclose(got_v.distances, want_v.distances, rtol=1e-9)


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
def test_search_approximate_index_finds_the_exact_neighbours_with_exact_distances(method):
    """The faiss path: clustered unit vectors (like similarity embeddings); nearly every true
    neighbour found, and every distance returned is the exact one (re-ranked), nearest first."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(300, 64))
    x = centres[rng.integers(0, 300, 20_000)] + 0.3 * rng.normal(size=(20_000, 64))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    queries = x[:50] + 0.01 * rng.normal(size=(50, 64)).astype(np.float32)
    approx, brute = NeighbourIndex(x, method=method), NeighbourIndex(x, method="brute")
    got, want = approx.query(queries, 10), brute.query(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.indices, want.indices)])
    assert recall >= 0.95
    exact = np.linalg.norm(x[got.indices].astype(np.float64) - queries[:, None].astype(np.float64), axis=2)
    np.testing.assert_allclose(got.distances, exact, rtol=1e-9)
    assert np.all(np.diff(got.distances, axis=1) >= 0)
    views = np.stack([queries[:8]] * 3)  # (3, 8, d): each query row's best view
    got_v, want_v = approx.query_views(views, 10), brute.query_views(views, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got_v.indices, want_v.indices)]) >= 0.95


def test_search_method_rule_keeps_small_and_two_dimensional_catalogues_exact():
    from galaxy_vae.search import ANN_DEFAULT, choose_method

    assert choose_method(1_000_000, 2) == "kdtree"
    assert choose_method(21_785, 64) == "brute"
    assert choose_method(240_000, 64) == ANN_DEFAULT
    assert choose_method(240_000, 12_288) == "brute"
