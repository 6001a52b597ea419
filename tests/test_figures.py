"""Plotly figures: the latent map's row contract, highlights, background, helpers, JSON output."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from galaxy_vae import figures
from galaxy_vae.data import model_view


@pytest.fixture(scope="module")
def sample_map(sample):
    """A 2-D stand-in latent for every sample galaxy: mean colour of its core and its outskirts."""
    core = sample.images[:, 28:41, 28:41].astype(np.float32).mean(axis=(1, 2, 3))
    ring = sample.images[:, :8].astype(np.float32).mean(axis=(1, 2, 3))
    return np.column_stack([core, ring]) / 255.0  # (N, 2)


def galaxy_traces(fig: go.Figure) -> list:
    return [t for t in fig.data if t.meta == figures.GALAXY_META]


def assert_valid(fig: go.Figure) -> dict:
    """Full Plotly validation of the built figure, and a JSON round trip."""
    go.Figure(fig.to_dict())  # raises on any invalid property or value
    return json.loads(fig.to_json())


def test_figures_latent_map_one_trace_per_class_with_global_rows(sample, sample_map):
    fig = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids)
    traces = galaxy_traces(fig)
    assert [t.name for t in traces] == list(sample.class_names)  # every class of the sample present
    assert all(t.type == "scattergl" for t in traces)
    rows = np.concatenate([np.asarray(t.customdata) for t in traces])
    assert sorted(rows.tolist()) == list(range(len(sample)))
    colours = figures.class_colors(sample.class_names)
    for t in traces:
        cd = np.asarray(t.customdata)
        assert np.all(sample.labels[cd] == sample.class_names.index(t.name))
        np.testing.assert_array_equal(np.asarray(t.x), sample_map[cd, 0])
        np.testing.assert_array_equal(np.asarray(t.y), sample_map[cd, 1])
        assert list(t.text) == list(sample.ids[cd])  # hover shows the galaxy id...
        assert "%{text}" in t.hovertemplate and t.name in t.hovertemplate  # ...and its class
        assert t.marker.color == colours[t.name]
    assert len(fig.layout.images) == 0  # background off by default
    assert_valid(fig)


def test_figures_latent_map_marks_query_and_neighbours_on_top(sample, sample_map):
    neighbours = np.array([10, 500, 42])
    fig = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids,
                             query=sample_map[10], neighbours=neighbours)
    by_name = {t.name: t for t in fig.data}
    assert by_name["query"].customdata is None  # the star may mark an upload: no row
    # a ring covers its galaxy, so a click on the ring must select that galaxy
    np.testing.assert_array_equal(np.asarray(by_name["neighbours"].customdata), neighbours)
    assert by_name["query"].marker.symbol == "star"
    np.testing.assert_array_equal(np.asarray(by_name["neighbours"].x), sample_map[neighbours, 0])
    assert by_name["neighbours"].hovertext[0] == f"neighbour 1: {sample.ids[10]}"
    # the highlights are drawn last (on top); a selection on the star maps to no row
    assert [t.name for t in fig.data[-2:]] == ["neighbours", "query"]
    selection = {"points": [{"curve_number": len(fig.data) - 1, "point_index": 0},
                            {"curve_number": 0, "point_index": 3, "customdata": 17},
                            {"curve_number": 1, "point_index": 0, "customdata": [23]},
                            {"curve_number": 0, "point_index": 3, "customdata": 17}]}
    assert figures.selected_rows(selection) == [17, 23]
    assert figures.selected_rows(None) == [] and figures.selected_rows({"points": []}) == []
    assert_valid(fig)


def test_figures_background_toggle_adds_image_under_points(sample, sample_map):
    n, lo, hi = 3, np.array([0.0, 0.1]), np.array([0.6, 0.5])
    tiles = figures.mosaic(model_view(sample.images[:n * n]), n)
    fig = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids,
                             background=(tiles, (lo[0], hi[0], lo[1], hi[1])))
    assert len(fig.layout.images) == 1
    image = fig.layout.images[0]
    assert image.source.startswith("data:image/png;base64,") and image.layer == "below"
    assert (image.x, image.y, image.sizex, image.sizey) == pytest.approx((0.0, 0.5, 0.6, 0.4))
    uri = figures.png_data_uri(tiles)  # a cached URI gives the same figure without re-encoding
    again = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids,
                               background=(uri, (lo[0], hi[0], lo[1], hi[1])))
    assert again.layout.images[0].source == image.source
    assert_valid(fig)


def test_figures_grid_points_and_mosaic_share_orientation(sample):
    points = figures.latent_grid_points([-2.0, 0.0], [2.0, 1.0], 4)
    assert points.shape == (16, 2)
    np.testing.assert_allclose(points[0], [-1.5, 0.875])  # top-left cell: lowest z1, highest z2
    np.testing.assert_allclose(points[3], [1.5, 0.875])  # top-right
    np.testing.assert_allclose(points[-1], [1.5, 0.125])  # bottom-right
    images = sample.images[:6 * 6]
    tiles = figures.mosaic(images, 6)
    assert tiles.shape == (6 * 69, 6 * 69, 3) and tiles.dtype == np.uint8
    np.testing.assert_array_equal(tiles[69:138, 2 * 69:3 * 69], images[1 * 6 + 2])  # row 1, column 2


def test_figures_upscale_is_crisp_nearest_neighbour(sample):
    image = model_view(sample.images[0])
    big = figures.upscale(image, 4)
    assert big.shape == (256, 256, 3) and big.dtype == np.uint8
    np.testing.assert_array_equal(big[::4, ::4], image)
    np.testing.assert_array_equal(big[3::4, 3::4], image)  # each pixel a flat 4x4 block
    assert figures.upscale(image, 1) is not image and np.array_equal(figures.upscale(image, 1), image)


def test_figures_raster_map_places_galaxies_and_marks_the_point(sample, sample_map):
    lo, hi = figures.latent_bounds(sample_map)
    extent = (lo[0], hi[0], lo[1], hi[1])
    base = figures.raster_map(sample_map, sample.labels, sample.class_names, extent, size=200)
    assert base.shape == (200, 200, 3) and base.dtype == np.uint8
    # every galaxy is a non-background dot where its latent falls; the last drawn keeps its colour
    cols = np.round((sample_map[:, 0] - lo[0]) / (hi[0] - lo[0]) * 199).astype(int)
    rows = np.round((hi[1] - sample_map[:, 1]) / (hi[1] - lo[1]) * 199).astype(int)
    assert (base[rows, cols] != 18).any(axis=1).all()
    last = len(sample_map) - 1
    colour = figures.class_colors(sample.class_names)[sample.class_names[sample.labels[last]]]
    assert tuple(base[rows[last], cols[last]]) == tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    assert (base == 18).all(axis=2).mean() > 0.5  # mostly dark sky
    marked = figures.mark_map(base, extent, sample_map[5], nearest=sample_map[6])
    assert marked.shape == base.shape and not np.array_equal(marked, base)
    assert np.array_equal(figures.raster_map(sample_map, sample.labels, sample.class_names, extent, size=200), base)
    # the cross-hair is centred on the point: gold pixels around its position
    cx = int(round((sample_map[5, 0] - lo[0]) / (hi[0] - lo[0]) * 199))
    cy = int(round((hi[1] - sample_map[5, 1]) / (hi[1] - lo[1]) * 199))
    patch = marked[max(cy - 3, 0):cy + 4, max(cx - 3, 0):cx + 4].reshape(-1, 3)
    assert any(tuple(p) == (255, 215, 0) for p in patch)


def test_figures_interpolation_path(sample, sample_map):
    path = np.linspace(sample_map[0], sample_map[1], 6)
    fig = figures.interpolation_path(sample_map, sample.labels, sample.class_names, path, sample_map[10:16])
    by_name = {t.name: t for t in fig.data}
    np.testing.assert_allclose(np.asarray(by_name["path"].x), path[:, 0])
    assert len(by_name["to nearest"].x) == 3 * 6  # one segment + gap per step
    assert_valid(fig)


def test_figures_loss_curves_tolerate_missing_terms():
    history = {"train": [{"epoch": 1, "loss": 3.0, "recon": 2.0, "kl": 1.0},
                         {"epoch": 2, "loss": 2.0, "recon": 1.5, "kl": 0.5, "class": 0.7}],
               "val": [{"epoch": 1, "loss": 3.5}, {"epoch": 2, "loss": float("nan"), "recon": 1.8}]}
    fig = figures.loss_curves(history)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["loss", "recon", "kl", "class"]
    val_loss = [t for t in fig.data if t.name == "val" and t.xaxis == "x"][0]
    assert list(val_loss.y) == [3.5, None]  # NaN becomes a gap
    assert_valid(fig)
    only_train = figures.loss_curves({"train": history["train"]})
    assert {t.name for t in only_train.data} == {"train"}
    empty = figures.loss_curves({})
    assert not empty.data and "No training history" in empty.layout.annotations[0].text
    assert_valid(empty)


def test_figures_confusion_matrix_rows_are_true_classes(sample):
    cm = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    names = list(sample.class_names[:3])
    fig = figures.confusion_matrix_figure(cm, names)
    heat = fig.data[0]
    np.testing.assert_allclose(np.asarray(heat.z)[0], [0.8, 0.2, 0.0])
    np.testing.assert_allclose(np.asarray(heat.z)[2], [0.0, 0.0, 0.0])  # empty row stays 0, no NaN
    np.testing.assert_array_equal(np.asarray(heat.text), cm)
    assert list(heat.y) == names and fig.layout.yaxis.autorange == "reversed"
    assert_valid(fig)


def test_figures_class_colors_distinct_and_stable():
    names = [f"class {i}" for i in range(10)]
    colours = figures.class_colors(names)
    assert len(set(colours.values())) == 10
    assert figures.class_colors(names[:6]) == {n: colours[n] for n in names[:6]}
