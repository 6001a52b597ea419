"""Pixels and image bytes: crisp enlargement, one tiling for mosaics, grids and strips, the raster
map, the GIF export and the class colours."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from galaxy_vae import raster
from galaxy_vae.data import model_view
from galaxy_vae.generate import latent_bounds, latent_grid_points


def test_raster_upscale_is_crisp_nearest_neighbour(sample):
    image = model_view(sample.images[0])
    big = raster.upscale(image, 4)
    assert big.shape == (256, 256, 3) and big.dtype == np.uint8
    np.testing.assert_array_equal(big[::4, ::4], image)
    np.testing.assert_array_equal(big[3::4, 3::4], image)  # each pixel a flat 4x4 block
    assert raster.upscale(image, 1) is not image and np.array_equal(raster.upscale(image, 1), image)


def test_raster_tile_and_grid_points_share_orientation(sample):
    points = latent_grid_points([-2.0, 0.0], [2.0, 1.0], 4)
    assert points.shape == (16, 2)
    np.testing.assert_allclose(points[0], [-1.5, 0.875])  # top-left cell: lowest x, highest y
    np.testing.assert_allclose(points[3], [1.5, 0.875])  # top-right
    np.testing.assert_allclose(points[-1], [1.5, 0.125])  # bottom-right
    images = sample.images[:6 * 6]
    tiles = raster.tile(images, 6)
    assert tiles.shape == (6 * 69, 6 * 69, 3) and tiles.dtype == np.uint8
    np.testing.assert_array_equal(tiles[69:138, 2 * 69:3 * 69], images[1 * 6 + 2])  # row 1, column 2


@pytest.mark.parametrize("n, rows, cols", [(1, 1, 1), (5, 2, 3), (10, 3, 4), (16, 4, 4), (17, 4, 5)])
def test_raster_grid_png_has_the_requested_layout(n, rows, cols):
    tiles = np.random.default_rng(n).integers(1, 256, (n, 8, 8, 3), dtype=np.uint8)
    assert raster.grid_shape(n) == (rows, cols)
    img = np.asarray(Image.open(io.BytesIO(raster.grid_png(tiles, scale=2))))
    assert img.shape == (rows * 16, cols * 16, 3)
    for i in range(rows * cols):  # row-major; cells past n stay black
        r, c = divmod(i, cols)
        cell = img[r * 16:(r + 1) * 16:2, c * 16:(c + 1) * 16:2]
        assert np.array_equal(cell, tiles[i]) if i < n else not cell.any()


def test_raster_strip_is_one_row_with_black_gaps(sample):
    frames = model_view(sample.images[:6])  # (6, 64, 64, 3)
    image = Image.open(io.BytesIO(raster.grid_png(frames, scale=2, columns=6, gap=2)))
    assert image.format == "PNG" and image.size == (6 * 128 + 5 * 4, 128)
    pixels = np.asarray(image.convert("RGB"))
    assert np.array_equal(pixels[:, 128 + 4:2 * 128 + 4], np.repeat(np.repeat(frames[1], 2, 0), 2, 1))
    assert not pixels[:, 128:132].any()  # black gap


def test_raster_gif_has_one_frame_per_step(sample):
    frames = model_view(sample.images[:6])
    gif = Image.open(io.BytesIO(raster.gif_bytes(frames, scale=2, frame_ms=250)))
    assert gif.format == "GIF" and gif.n_frames == 6 and gif.size == (128, 128)
    assert gif.info.get("loop") == 0 and gif.info.get("duration") == 250
    gif.seek(3)
    got = np.asarray(gif.convert("RGB")).astype(int)
    want = np.repeat(np.repeat(frames[3], 2, 0), 2, 1).astype(int)
    assert np.abs(got - want).mean() < 6  # a 256-colour palette per frame, close to the original


def test_raster_display_scale():
    assert raster.display_scale(64) == 3 and raster.display_scale(32) == 6
    assert raster.display_scale(640, 256) == 1


def test_raster_map_places_galaxies_and_marks_the_point(sample):
    points = np.column_stack([sample.images[:, 28:41, 28:41].mean(axis=(1, 2, 3)),
                              sample.images[:, :8].mean(axis=(1, 2, 3))]) / 255.0  # (N, 2) stand-in map
    lo, hi = latent_bounds(points)
    extent = (lo[0], hi[0], lo[1], hi[1])
    base = raster.raster_map(points, sample.labels, sample.class_names, extent, size=200)
    assert base.shape == (200, 200, 3) and base.dtype == np.uint8
    # every galaxy is a non-background dot where its point falls; the last drawn keeps its colour
    cols = np.round((points[:, 0] - lo[0]) / (hi[0] - lo[0]) * 199).astype(int)
    rows = np.round((hi[1] - points[:, 1]) / (hi[1] - lo[1]) * 199).astype(int)
    assert (base[rows, cols] != 18).any(axis=1).all()
    last = len(points) - 1
    colour = raster.class_colors(sample.class_names)[sample.class_names[sample.labels[last]]]
    assert tuple(base[rows[last], cols[last]]) == tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    assert (base == 18).all(axis=2).mean() > 0.5  # mostly dark sky
    marked = raster.mark_map(base, extent, points[5], nearest=points[6])
    assert marked.shape == base.shape and not np.array_equal(marked, base)
    assert np.array_equal(raster.raster_map(points, sample.labels, sample.class_names, extent, size=200), base)
    cx = int(round((points[5, 0] - lo[0]) / (hi[0] - lo[0]) * 199))
    cy = int(round((hi[1] - points[5, 1]) / (hi[1] - lo[1]) * 199))
    patch = marked[max(cy - 3, 0):cy + 4, max(cx - 3, 0):cx + 4].reshape(-1, 3)
    assert any(tuple(p) == (255, 215, 0) for p in patch)  # the gold cross-hair on the point


def test_raster_class_colors_distinct_and_stable():
    names = [f"class {i}" for i in range(10)]
    colours = raster.class_colors(names)
    assert len(set(colours.values())) == 10
    assert raster.class_colors(names[:6]) == {n: colours[n] for n in names[:6]}


def test_raster_density_map_counts_every_galaxy_by_class_with_y_up():
    names = ["Elliptical", "Spiral CW"]
    colours = [raster._rgb(h) for h in raster.class_colors(names).values()]
    # 10 x 5 pixels over x in [0, 10), y in [0, 5): pixel (row, col) = (4 - floor(y), floor(x))
    points = np.array([[0.5, 0.5]] * 9 + [[0.5, 0.5], [9.5, 4.5], [3.5, 2.5], [3.5, 2.5]])
    labels = np.array([0] * 9 + [1, 1, 0, 1])
    image = raster.density_map(points, labels, names, (0, 10, 0, 5), width=10)
    assert image.shape == (5, 10, 4) and image.dtype == np.uint8
    bottom_left, top_right, mixed = image[4, 0], image[0, 9], image[2, 3]
    assert bottom_left[3] == 255  # the densest pixel is opaque
    np.testing.assert_allclose(bottom_left[:3], (9 * np.array(colours[0]) + colours[1]) / 10, atol=1)
    np.testing.assert_array_equal(top_right[:3], colours[1])  # a lone galaxy shows, in its class colour
    assert 0 < top_right[3] < mixed[3] < 255  # opacity grows with the count
    np.testing.assert_allclose(mixed[:3], (np.array(colours[0]) + colours[1]) / 2, atol=1)
    occupied = {(4, 0), (0, 9), (2, 3)}
    assert all(image[r, c, 3] == 0 for r in range(5) for c in range(10) if (r, c) not in occupied)
