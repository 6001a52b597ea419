"""Plotly figures: the latent map's row contract, highlights, background, helpers, JSON output."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from galaxy_vae import figures, generate, raster
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
    colours = raster.class_colors(sample.class_names)
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
    tiles = raster.tile(model_view(sample.images[:n * n]), n)
    fig = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids,
                             background=(tiles, (lo[0], hi[0], lo[1], hi[1])))
    assert len(fig.layout.images) == 1
    image = fig.layout.images[0]
    assert image.source.startswith("data:image/png;base64,") and image.layer == "below"
    assert (image.x, image.y, image.sizex, image.sizey) == pytest.approx((0.0, 0.5, 0.6, 0.4))
    uri = raster.data_uri(tiles)  # a cached URI gives the same figure without re-encoding
    again = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids,
                               background=(uri, (lo[0], hi[0], lo[1], hi[1])))
    assert again.layout.images[0].source == image.source
    assert_valid(fig)


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




def test_figures_a_large_map_without_layers_draws_every_galaxy_compact(sample, sample_map, monkeypatch):
    """Above LARGE_MAP galaxies, with no layers built: the same per-class traces, float32
    coordinates, int32 global rows, no per-point text."""
    monkeypatch.setattr(figures, "LARGE_MAP", 1000)
    fig = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids, neighbours=np.array([3, 9]))
    traces = galaxy_traces(fig)
    assert [t.name for t in traces] == list(sample.class_names)
    rows = np.concatenate([np.asarray(t.customdata) for t in traces])
    assert sorted(rows.tolist()) == list(range(len(sample)))
    for t in traces:
        cd = np.asarray(t.customdata)
        assert cd.dtype == np.int32 and np.all(sample.labels[cd] == sample.class_names.index(t.name))
        assert np.asarray(t.x).dtype == np.float32
        np.testing.assert_array_equal(np.asarray(t.x), sample_map[cd, 0].astype(np.float32))
        np.testing.assert_array_equal(np.asarray(t.y), sample_map[cd, 1].astype(np.float32))
        assert t.text is None and "%{customdata}" in t.hovertemplate and t.name in t.hovertemplate
    spec = assert_valid(fig)
    assert spec["data"][0]["x"]["dtype"] == "f4" and spec["data"][0]["customdata"]["dtype"] == "i4"


def test_figures_a_large_map_is_a_density_image_under_one_exact_galaxy_per_cell(sample, sample_map):
    """MapLayers: every galaxy in the density image, the representatives as points that each carry
    their own row at their own place; highlights still ring any galaxy, drawn as a point or not."""
    extent = generate.map_extent(sample_map)
    rows = generate.cell_sample_rows(sample_map, extent, figures.MAP_CELLS)
    density = raster.data_uri(raster.density_map(sample_map, sample.labels, sample.class_names, extent))
    layers = figures.large_map_layers(sample_map, sample.labels, sample.class_names, rows, density, extent)
    assert layers.shown == len(rows) < len(sample) == layers.total
    hidden = np.setdiff1d(np.arange(len(sample)), rows)[:3]  # galaxies not drawn as points
    before = go.Figure(data=layers.traces).to_json()
    fig = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids, neighbours=hidden,
                             layers=layers, background=("data:image/jpeg;base64,AAAA", extent))
    traces = galaxy_traces(fig)
    drawn = np.concatenate([np.asarray(t.customdata) for t in traces])
    assert sorted(drawn.tolist()) == rows.tolist()
    for t in traces:
        cd = np.asarray(t.customdata)
        np.testing.assert_array_equal(np.asarray(t.x), sample_map[cd, 0].astype(np.float32))
        assert np.all(sample.labels[cd] == sample.class_names.index(t.name)) and t.text is None
    by_name = {t.name: t for t in fig.data}
    np.testing.assert_array_equal(np.asarray(by_name["neighbours"].customdata), hidden)
    np.testing.assert_array_equal(np.asarray(by_name["neighbours"].x), sample_map[hidden, 0])
    # the density over the chosen background, both under the points, over the same extent
    assert [im.source[:22] for im in fig.layout.images] == ["data:image/jpeg;base64", "data:image/png;base64,"]
    assert fig.layout.images[1].source == density and fig.layout.images[1].opacity == 1
    assert (fig.layout.images[1].x, fig.layout.images[1].sizex) == pytest.approx((extent[0], extent[1] - extent[0]))
    assert_valid(fig)
    assert go.Figure(data=layers.traces).to_json() == before  # the cached layers are not altered


def test_figures_a_map_at_or_below_large_map_keeps_its_id_hover(sample, sample_map, monkeypatch):
    monkeypatch.setattr(figures, "LARGE_MAP", len(sample))
    fig = figures.latent_map(sample_map, sample.labels, sample.class_names, sample.ids)
    assert all(t.text is not None for t in galaxy_traces(fig))
