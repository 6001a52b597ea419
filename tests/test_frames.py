"""Raw frames, their cached pyramid, and the views rendered from them (real sample frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from galaxy_vae.augment import blur, catalogue_views, photometric, sample_params, views
from galaxy_vae.configs import AugmentConfig
from galaxy_vae.data import model_view
from galaxy_vae.errors import DataError
from galaxy_vae.frames import Renderer, build_pyramid, frames_present, identity_views, pyramid_key, read_frame

ROWS = np.arange(0, 6664, 208)[:32]  # 32 galaxies spread over the sample


@pytest.fixture(scope="module")
def renderer(sample, frames_path, tmp_path_factory):
    levels = build_pyramid(frames_path, sample.ids[ROWS], tmp_path_factory.mktemp("pyramid"), processes=1,
                           progress=False)
    return Renderer(levels)


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def test_catalogue_view_rendered_from_the_frame_matches_the_stored_cutout(sample, renderer):
    got = catalogue_views(renderer, np.arange(len(ROWS)))
    diff = (got - _as_tensor(model_view(sample.images[ROWS]))).abs() * 255
    assert diff.mean() < 1.0, "the view is not where the catalogue cut it"
    assert torch.quantile(diff.flatten(), 0.99) <= 3


def test_a_one_pixel_shift_moves_the_view(sample, renderer):
    p = identity_views(len(ROWS))
    p["shift"][:, 0] = 1.0
    target = _as_tensor(model_view(sample.images[ROWS]))
    shifted = (renderer(np.arange(len(ROWS)), p) - target).abs().mean() * 255
    assert shifted > 3 * (catalogue_views(renderer, np.arange(len(ROWS))) - target).abs().mean() * 255


def test_a_quarter_turn_view_is_the_rotated_catalogue_view(renderer):
    p = identity_views(len(ROWS))
    p["angle"][:] = np.pi / 2
    turned = renderer(np.arange(len(ROWS)), p)
    straight = catalogue_views(renderer, np.arange(len(ROWS)))
    best = min(float((turned - torch.rot90(straight, k, dims=(2, 3))).abs().mean()) for k in (1, 3))
    assert best * 255 < 2.5
    assert float((turned - straight).abs().mean()) * 255 > 2 * best * 255


def test_zooming_out_shows_the_sky_the_cutout_cannot(sample, renderer):
    """At twice the field, the view holds the catalogue view shrunk in its centre: the frame gives
    the sky around it, which no rescaling of the 69 px cutout could."""
    p = identity_views(len(ROWS))
    p["fov"][:] = 2.0
    wide = renderer(np.arange(len(ROWS)), p)
    shrunk = torch.nn.functional.avg_pool2d(catalogue_views(renderer, np.arange(len(ROWS))), 2)  # (B, 3, 32, 32)
    assert float((wide[:, :, 16:48, 16:48] - shrunk).abs().mean()) * 255 < 2.0


def test_the_pyramid_is_cached_and_rebuilt_when_a_frame_changes(sample, frames_path, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    ids = sample.ids[ROWS[:4]]
    for i in ids:
        (folder / f"{i}.jpeg").write_bytes((frames_path / f"{i}.jpeg").read_bytes())
    key = pyramid_key(folder, ids)
    first = build_pyramid(folder, ids, tmp_path / "cache", processes=1, progress=False)
    assert (tmp_path / "cache" / key / "level0.npy").is_file()
    again = build_pyramid(folder, ids, tmp_path / "cache", processes=1, progress=False)
    assert np.array_equal(first[2], again[2])
    Image.new("RGB", (423, 423), (200, 0, 0)).save(folder / f"{ids[0]}.jpeg")  # a frame replaced
    assert pyramid_key(folder, ids) != key
    rebuilt = build_pyramid(folder, ids, tmp_path / "cache", processes=1, progress=False)
    assert rebuilt[5][0].mean() > first[5][0].mean() + 20 and np.array_equal(rebuilt[5][1:], first[5][1:])


def test_missing_or_wrong_frames_are_refused_with_the_fix(sample, frames_path, tmp_path):
    with pytest.raises(DataError, match="GALAXY_VAE_FRAMES"):
        read_frame(tmp_path, sample.ids[0])
    Image.new("RGB", (424, 424)).save(tmp_path / "x.jpeg")
    with pytest.raises(DataError, match="423 x 423"):
        read_frame(tmp_path, "x")
    assert frames_present(frames_path, [sample.ids[0], "not-a-galaxy"]).tolist() == [True, False]
    assert not frames_present(None, [sample.ids[0]]).any()


def test_augmented_views_are_seeded_and_in_range(renderer):
    rows = np.arange(len(ROWS))
    a, pa = views(renderer, rows, AugmentConfig(), torch.Generator().manual_seed(3))
    b, _ = views(renderer, rows, AugmentConfig(), torch.Generator().manual_seed(3))
    c, _ = views(renderer, rows, AugmentConfig(), torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (len(rows), 3, 64, 64) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(torch.round(a * 255), a * 255)  # 8-bit values, as an upload's
    cfg = AugmentConfig()
    assert pa["fov"].min() >= cfg.fov_min and pa["fov"].max() <= cfg.fov_max


def test_sky_offset_and_gain_change_the_picture_as_asked():
    x = torch.full((2, 3, 8, 8), 0.2)
    p = sample_params(2, AugmentConfig(), torch.Generator().manual_seed(0))
    p.update(blur=torch.zeros(2), gamma=torch.ones(2), gain=torch.tensor([1.0, 2.0]), tint=torch.ones(2, 3),
             sky=torch.tensor([0.1, 0.0]), noise=torch.zeros(2), poisson=torch.zeros(2))
    out = photometric(x, p, torch.Generator())
    assert torch.allclose(out[0], torch.full_like(out[0], round(0.3 * 255) / 255))
    assert torch.allclose(out[1], torch.full_like(out[1], round(0.4 * 255) / 255))


def test_blur_keeps_flux_and_zero_sigma_is_identity():
    x = torch.zeros(2, 3, 17, 17)
    x[:, :, 8, 8] = 1.0
    out = blur(x, torch.tensor([0.0, 1.5]))
    assert torch.equal(out[0], x[0])
    assert torch.allclose(out[1].sum((1, 2)), torch.ones(3), atol=1e-5) and out[1, 0, 8, 8] < 0.2
