"""Unit tests of galaxy_vae.generate: lerp/slerp, paths located on the map, choosing galaxies, exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from galaxy_vae import generate
from galaxy_vae.catalogue import Catalogue, ModelSpace
from galaxy_vae.checkpoints import Checkpoint
from galaxy_vae.errors import DataError
from galaxy_vae.models import build_model

RNG = np.random.default_rng(0)
A, B = RNG.normal(size=8), RNG.normal(size=8)
TS = np.linspace(0.0, 1.0, 11)


def angle(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.arccos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1)))


@pytest.fixture(scope="module")
def dense_catalogue(sample):
    """A 64-D dense autoencoder (seeded, untrained: these tests are about geometry, not looks) over
    600 real galaxies."""
    torch.manual_seed(0)
    model = build_model("dense_ae").eval()
    return Catalogue(sample.take(np.arange(600)), ModelSpace(Checkpoint(model, {"model": "dense_ae"}, Path("mem"))))


@pytest.mark.parametrize("fn", [generate.lerp, generate.slerp])
def test_generate_interpolation_endpoints_are_exact(fn):
    assert np.array_equal(fn(A, B, 0.0), A) and np.array_equal(fn(A, B, 1.0), B)
    path = fn(A, B, TS)
    assert path.shape == (11, 8)
    assert np.array_equal(path[0], A) and np.array_equal(path[-1], B)


def test_generate_lerp_is_the_straight_line():
    assert np.allclose(generate.lerp(A, B, 0.5), (A + B) / 2)
    steps = np.diff(generate.lerp(A, B, TS), axis=0)
    assert np.allclose(steps, (B - A) / 10)


def test_generate_slerp_keeps_equal_norms_and_turns_at_constant_speed():
    b = B / np.linalg.norm(B) * np.linalg.norm(A)
    path = generate.slerp(A, b, TS)
    assert np.allclose(np.linalg.norm(path, axis=1), np.linalg.norm(A))
    omega = angle(A, b)
    assert np.allclose([angle(A, p) for p in path], TS * omega, atol=1e-7)  # arccos near 1 is only ~1e-8 accurate
    # not the straight line, which would cut inside the sphere
    assert np.linalg.norm(generate.lerp(A, b, 0.5)) < np.linalg.norm(path[5]) - 1e-3


def test_generate_slerp_interpolates_unequal_norms_linearly():
    b = 3.0 * B / np.linalg.norm(B)
    a = 0.5 * A / np.linalg.norm(A)
    path = generate.slerp(a, b, TS)
    assert np.allclose(np.linalg.norm(path, axis=1), 0.5 + TS * 2.5)
    assert np.allclose([angle(a, p) for p in path[1:]], TS[1:] * angle(a, b), atol=1e-7)


def test_generate_slerp_of_parallel_vectors_stays_on_their_line():
    path = generate.slerp(A, 4.0 * A, TS)
    assert np.all(np.isfinite(path))
    assert np.allclose(path, A[None] * (1 + 3 * TS)[:, None])


def test_generate_slerp_with_a_zero_vector_is_the_straight_line():
    zero = np.zeros(8)
    assert np.allclose(generate.slerp(zero, B, TS), generate.lerp(zero, B, TS))
    assert np.allclose(generate.slerp(A, zero, TS), generate.lerp(A, zero, TS))
    assert np.array_equal(generate.slerp(zero, zero, TS), np.zeros((11, 8)))


def test_generate_slerp_of_opposite_vectors_turns_half_a_circle():
    path = generate.slerp(A, -A, TS)
    assert np.all(np.isfinite(path))
    assert np.allclose(np.linalg.norm(path, axis=1), np.linalg.norm(A))
    assert abs(path[5] @ A) < 1e-9  # halfway: orthogonal to both ends
    flat = generate.slerp(np.array([2.0, 0.0]), np.array([-2.0, 0.0]), 0.5)
    assert np.allclose(np.abs(flat), [0.0, 2.0])


@pytest.mark.parametrize("fn", [generate.lerp, generate.slerp, generate.interpolate])
@pytest.mark.parametrize("t", [-0.01, 1.5, float("nan"), [0.0, 0.5, 2.0]])
def test_generate_t_outside_unit_interval_is_refused(fn, t):
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        fn(A, B, t)


def test_generate_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same length"):
        generate.lerp(A, B[:4], 0.5)
    with pytest.raises(ValueError, match="method"):
        generate.interpolate(A, B, 0.5, "cubic")
    with pytest.raises(ValueError, match="at least 2 frames"):
        generate.frame_ts(1)


def test_generate_frame_ts_match_the_seed_strip():
    assert np.allclose(generate.frame_ts(6), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


@pytest.mark.parametrize("method", ["linear", "spherical"])
def test_generate_path_runs_in_the_full_latent_space(dense_catalogue, method):
    cat = dense_catalogue
    a, b = 3, 250
    path = generate.path_between(cat, a, b, generate.frame_ts(6), method)
    assert path.latents.shape == (6, 64) and path.latents.dtype == np.float32
    assert np.array_equal(path.latents[0], cat.vectors[a]) and np.array_equal(path.latents[-1], cat.vectors[b])
    assert np.allclose(path.xy, cat.projection.to_map(path.latents))
    assert path.nearest[0] == a and path.nearest[-1] == b and path.distances[0] == path.distances[-1] == 0
    exact = np.linalg.norm(cat.vectors[None] - path.latents[:, None], axis=2).min(axis=1)
    assert np.allclose(path.distances, exact, atol=1e-4)
    # the decoded endpoints are the decoded latent means: pixel for pixel, but for a rounding step
    # (a batch of 6 and one of 2 sum in different orders on one thread: a value at .5 can round
    # either way, seen in the full suite, where the app's import sets torch to one thread)
    ends, means = cat.decode(path.latents)[[0, -1]].astype(int), cat.decode(cat.vectors[[a, b]]).astype(int)
    assert np.abs(ends - means).max() <= 1 and np.mean(ends != means) < 0.01


def test_generate_map_point_lies_on_the_principal_plane(dense_catalogue):
    cat = dense_catalogue
    xy = cat.map_xy[10] + np.array([0.05, -0.02])
    point = generate.map_point(cat, xy)
    assert point.latents.shape == (1, 64)
    assert np.allclose(point.xy[0], xy, atol=1e-5)
    assert np.allclose(point.latents[0], cat.projection.to_latent(xy), atol=1e-6)


def test_generate_slider_range_covers_the_data_with_a_margin(dense_catalogue):
    spec = generate.slider_range(dense_catalogue.map_xy)
    xy = dense_catalogue.map_xy
    lo, hi = np.array(spec["lo"]), np.array(spec["hi"])
    assert np.all(lo < xy.min(axis=0)) and np.all(hi > xy.max(axis=0))
    assert np.all((lo <= spec["start"]) & (np.array(spec["start"]) <= hi))
    assert np.allclose(np.array(spec["step"]) * 200, hi - lo)
    for axis in range(2):  # the printed value changes from one step to the next
        f, step = spec["format"][axis], spec["step"][axis]
        assert len({f % (spec["start"][axis] + i * step) for i in range(5)}) == 5
    tiny = generate.slider_range(np.array([[0.0375, 0.0678], [0.0383, 0.0689]]))
    assert tiny["format"] == ["%.7f", "%.7f"]  # steps of ~5e-6


def test_generate_random_pair_draws_from_the_chosen_classes(sample):
    names = list(sample.class_names)
    merger, edge_on = names.index("Merger"), names.index("Edge-on")
    a, b = generate.random_pair(sample.labels, merger, edge_on, seed=3)
    assert sample.labels[a] == merger and sample.labels[b] == edge_on
    assert generate.random_pair(sample.labels, merger, edge_on, seed=3) == (a, b)
    pairs = {generate.random_pair(sample.labels, merger, merger, seed=s) for s in range(5)}
    assert len(pairs) > 1 and all(x != y for x, y in pairs)
    with pytest.raises(DataError, match="No galaxy of class"):
        generate.random_pair(sample.labels, len(names), 0, class_names=names + ["Empty"])
    with pytest.raises(DataError, match="No second galaxy"):
        generate.random_pair(np.array([0, 1, 1]), 0, 0)


def test_generate_find_row_by_id(sample):
    assert generate.find_row(sample.ids, f"  {sample.ids[42]} ") == 42
    with pytest.raises(DataError, match="No galaxy with id 'nope'"):
        generate.find_row(sample.ids, "nope")


def test_generate_pair_after_click_sets_one_end_per_click():
    pair, end = generate.pair_after_click((1, 2), [7], "A")
    assert (pair, end) == ((7, 2), "B")
    pair, end = generate.pair_after_click(pair, [9], end)
    assert (pair, end) == ((7, 9), "A")
    assert generate.pair_after_click((1, 2), [5, 6, 8], "B") == ((5, 6), "B")  # a box or lasso: both ends
    assert generate.pair_after_click((1, 2), [], "B") == ((1, 2), "B")


def test_generate_cell_sample_rows_keeps_one_galaxy_of_every_occupied_cell():
    rng = np.random.default_rng(3)
    xy = np.vstack([rng.normal(0, 0.3, size=(5000, 2)), [[0.95, 0.95], [-0.97, 0.97], [5.0, 5.0]]])
    extent, n = (-1.0, 1.0, -1.0, 1.0), 16
    rows = generate.cell_sample_rows(xy, extent, n)
    cell = lambda p: (int(np.floor((1 - p[1]) / 2 * n)), int(np.floor((p[0] + 1) / 2 * n)))
    inside = [i for i in range(len(xy)) if np.all(np.abs(xy[i]) < 1)]
    occupied = {cell(xy[i]) for i in inside}
    assert len(rows) == len(occupied) and {cell(xy[i]) for i in rows} == occupied  # one per cell, each cell
    assert 5000 in rows and 5001 in rows and 5002 not in rows  # a lone galaxy is kept; one outside is not
    assert np.array_equal(rows, np.sort(rows)) and np.array_equal(rows, generate.cell_sample_rows(xy, extent, n))
    centres = generate.real_grid_rows(xy, extent, n)
    assert not np.array_equal(rows, np.sort(centres[centres >= 0]))  # random members, not the centre's nearest
