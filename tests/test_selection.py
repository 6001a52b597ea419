"""Regions of the map: shapes from Plotly and from links, the galaxies inside them, what a
selection holds; "more like these" and unusualness in a similarity; real galaxies on a grid."""

from __future__ import annotations

import numpy as np
import pytest

from galaxy_vae import selection
from galaxy_vae.catalogue import Catalogue, PixelSpace
from galaxy_vae.generate import real_grid_rows
from galaxy_vae.lookalikes import make_similarity


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(0).normal(size=(5000, 2))


def test_selection_box_holds_exactly_the_points_inside(points):
    shape = selection.parse("box:0.5,-0.25,-1,0.75")  # corners in either order
    rows = selection.rows_inside(points, shape)
    x, y = points.T
    expected = np.flatnonzero((x >= -0.25) & (x <= 0.5) & (y >= -1) & (y <= 0.75))
    assert np.array_equal(rows, expected) and len(rows) > 100


def test_selection_lasso_is_a_polygon_even_odd(points):
    triangle = selection.Shape("lasso", ((0.0, 0.0), (2.0, 0.0), (0.0, 2.0)))
    rows = selection.rows_inside(points, triangle)
    x, y = points.T
    assert np.array_equal(rows, np.flatnonzero((x > 0) & (y > 0) & (x + y < 2)))
    # a non-convex "C": the notch's points are outside
    c_shape = selection.Shape("lasso", ((0, 0), (3, 0), (3, 1), (1, 1), (1, 2), (3, 2), (3, 3), (0, 3)))
    inside = selection.rows_inside(np.array([[0.5, 1.5], [2.0, 1.5], [2.0, 0.5], [2.0, 2.5]]), c_shape)
    assert inside.tolist() == [0, 2, 3]


def test_selection_text_round_trip_and_bad_text_is_nothing():
    for text in ("box:-1,1,-2,2", "lasso:0,0,1,0,0.5,1"):
        assert selection.parse(text).to_text() == text
    for bad in (None, "", "box:1,2,3", "lasso:0,0,1,1", "box:a,b,c,d", "circle:0,0,1", "box:nan,1,2,3", "box"):
        assert selection.parse(bad) is None, bad


def test_selection_from_plotly_box_and_lasso_and_points():
    box = {"points": [{"customdata": 3}], "box": [{"x": [1, -1], "y": [0.5, 2], "xref": "x", "yref": "y"}], "lasso": []}
    assert selection.from_plotly(box) == selection.Shape("box", ((1.0, 0.5), (-1.0, 2.0)))
    long = {"box": [], "lasso": [{"x": list(range(1000)), "y": list(range(1000))}]}
    assert len(selection.from_plotly(long).points) <= selection.MAX_VERTICES
    assert selection.from_plotly({"points": [{"customdata": 3}], "box": [], "lasso": []}) is None
    assert selection.from_plotly(None) is None


def test_selection_counts_and_pages(sample):
    rows = np.arange(100, 160)
    counts = selection.class_counts(sample, rows)
    assert sum(c["selected"] for c in counts) == 60 and sum(c["catalogue"] for c in counts) == len(sample)
    assert sum(c["share of selection"] for c in counts) == pytest.approx(1.0)
    shown, pages = selection.page(rows, 3, size=24)
    assert pages == 3 and shown.tolist() == list(range(148, 160))
    assert selection.page(rows, 99, size=24)[0].tolist() == list(range(148, 160))  # clipped to the last
    csv = selection.selection_rows(sample, rows[:2], np.zeros((len(sample), 2)))
    assert [r["id"] for r in csv] == [str(sample.ids[100]), str(sample.ids[101])]


@pytest.fixture(scope="module")
def pixels(sample):
    return make_similarity("pixels", Catalogue(sample.take(np.arange(800)), PixelSpace()))


def test_selection_more_like_these_is_nearest_the_mean_and_outside_the_selection(pixels):
    rows = np.arange(10, 30)
    found = pixels.like(rows, 12)
    vectors = pixels.catalogue.vectors
    d = np.linalg.norm(vectors - vectors[rows].mean(axis=0), axis=1)
    d[rows] = np.inf
    assert found.indices[0].tolist() == np.argsort(d, kind="stable")[:12].tolist()
    np.testing.assert_allclose(found.distances[0], np.sort(d)[:12], rtol=1e-5)


def test_selection_unusualness_is_the_distance_to_the_kth_other_galaxy(pixels):
    score = pixels.catalogue.neighbour_distance(10)
    vectors = np.asarray(pixels.catalogue.vectors, dtype=np.float64)  # pixel rows are made on demand
    for row in (0, 123, 799):
        d = np.sort(np.linalg.norm(vectors - vectors[row], axis=1))[1:]  # itself excluded
        assert score[row] == pytest.approx(d[9], rel=1e-5)
    assert pixels.catalogue.neighbour_distance(10) is score  # computed once


def test_selection_real_grid_takes_the_galaxy_nearest_each_cell_centre():
    xy = np.array([[0.1, 0.9], [0.2, 0.8], [0.9, 0.1], [0.74, 0.76], [0.5, 0.5]])
    rows = real_grid_rows(xy, (0.0, 1.0, 0.0, 1.0), 2)  # cells: top-left, top-right, bottom-left, bottom-right
    # top-left holds rows 0 and 1 (row 1 is nearer its centre 0.25, 0.75); top-right only row 3;
    # bottom-right rows 2 and 4 (on the shared corner, it falls there), row 2 nearer; bottom-left nothing
    assert rows.tolist() == [1, 3, -1, 2]
