"""Automatic framing on real galaxies: the catalogue's extent, padded catalogue galaxies, the Milky Way."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from conftest import SAMPLE_DIR
from PIL import Image

from galaxy_vae import extent
from galaxy_vae.cutouts import GZ_CROP_FRACTION, galaxy10_cutout, prepare_upload, square_cutout
from galaxy_vae.data import model_view
from galaxy_vae.extent import CATALOGUE_EXTENT, catalogue_extent, measure_extent, measure_extents
from galaxy_vae.framing import CANVAS_SIDE, frame_to
from galaxy_vae.images import decode_image

PAD = 3  # padded test frames are 3x the cutout: the galaxy then covers a third of its extent


@pytest.fixture(scope="module")
def extents(sample) -> np.ndarray:
    return measure_extents(sample.images)


@pytest.fixture(scope="module")
def typical(sample, extents) -> np.ndarray:
    """Rows of 12 galaxies whose extent is within 0.003 of the catalogue median (spread across the file)."""
    rows = np.flatnonzero(np.abs(extents - np.median(extents)) < 0.003)
    return rows[np.linspace(0, len(rows) - 1, 12).astype(int)]


def padded(image: np.ndarray, factor: int = PAD) -> np.ndarray:
    """A (S, S, 3) cutout in the middle of a black (factor*S, factor*S, 3) frame."""
    s = image.shape[0]
    out = np.zeros((factor * s, factor * s, 3), np.uint8)
    out[(factor - 1) * s // 2:(factor + 1) * s // 2, (factor - 1) * s // 2:(factor + 1) * s // 2] = image
    return out


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def test_framing_catalogue_extent_is_measured_from_the_sample(sample, extents):
    measured = catalogue_extent(sample.images, max_images=None)
    assert measured == pytest.approx(np.median(extents))
    assert measured == pytest.approx(CATALOGUE_EXTENT, abs=5e-4)  # the documented constant is current
    assert catalogue_extent(sample.images) == pytest.approx(measured, abs=1e-3)  # 2,000 of 6,664
    assert np.isfinite(extents).all()
    p10, p90 = np.percentile(extents, [10, 90])
    # half-light radius ~ an eighth of the frame: the visible galaxy spans its central third to half
    assert 0.09 < p10 < measured < p90 < 0.2


def test_framing_catalogue_extent_is_vectorised(sample):
    catalogue_extent(sample.images[:300])  # warm up
    start = time.perf_counter()
    catalogue_extent(sample.images, max_images=None)
    elapsed = time.perf_counter() - start
    # ~1.2 s for all 6,664 cutouts on this project's 2 shared cores; one at a time takes over 10 s
    assert elapsed < 5.0, f"catalogue_extent took {elapsed:.2f} s"


def test_framing_batch_matches_single_measure(sample, extents):
    rows = np.arange(0, len(sample), 331)
    single = [measure_extent(sample.images[i]).fraction for i in rows]
    np.testing.assert_allclose(single, extents[rows], rtol=1e-9)
    pil = measure_extent(Image.fromarray(sample.images[rows[0]]))
    assert pil.fraction == pytest.approx(extents[rows[0]], rel=1e-9)


def test_framing_black_padding_leaves_extent_unchanged(sample, extents):
    """The sky is measured on the picture's own edge, not on a flat margin around it."""
    for i in range(0, len(sample), 701):
        frame = measure_extent(padded(sample.images[i]))
        assert frame.fraction * PAD == pytest.approx(extents[i], rel=1e-6)
        # letterboxing (bars above and below) is skipped the same way
        tall = np.zeros((69 + 40, 69, 3), np.uint8)
        tall[20:89] = sample.images[i]
        assert measure_extent(tall).fraction == pytest.approx(extents[i], rel=1e-6)


def test_framing_wide_field_measures_like_its_cutout():
    """A whole 423 px Galaxy Zoo frame (stars, neighbours, 4x the sky) and its Galaxy10 crop give
    the same galaxy radius in the frame's pixels. Counting all the light in the frame made the
    wide field 1.3x larger in the median; within the isophotal edge, 21 frames measured 1.02x."""
    ratios = []
    for path in sorted((SAMPLE_DIR / "Imagenes").glob("*.jpeg"))[::333]:
        frame = decode_image(path)
        crop = measure_extent(galaxy10_cutout(frame))
        ratios.append(measure_extent(frame).radius / (crop.radius * frame.width * GZ_CROP_FRACTION / 69))
    ratios = np.array(ratios)
    assert len(ratios) >= 20
    assert 0.97 < np.median(ratios) < 1.1
    assert np.mean(np.abs(ratios - 1) < 0.1) >= 2 / 3
    framed = frame_to(frame, CATALOGUE_EXTENT)  # the last frame: a small galaxy in a wide field
    assert framed.box[2] - framed.box[0] < frame.width  # cropped around the galaxy
    assert framed.after.fraction == pytest.approx(CATALOGUE_EXTENT, abs=0.015)


def test_framing_padded_catalogue_galaxy_recovered(sample, extents, typical):
    """Pad a typical galaxy into a 3x black frame, frame it back: the same extent, nearly the same pixels,
    and (in pixel space, at the seed ConvVAE's 32x32 view) its own nearest neighbour among all 6,664."""
    target = float(np.median(extents))
    queries = []
    for i in typical:
        prepared = prepare_upload(png(padded(sample.images[i])), framing="auto", target_fraction=target, sky=None)
        framing = prepared.framing
        assert framing.applied and framing.before.fraction == pytest.approx(extents[i] / PAD, rel=1e-6)
        side = framing.box[2] - framing.box[0]
        assert abs(side - 69) <= 2  # the 3x frame is cropped back to about the cutout
        # within 0.01 (7 %): the side rounds to whole pixels (+-0.7 %); 40 galaxies measured +-0.003
        assert framing.after.fraction == pytest.approx(extents[i], abs=0.01)
        # a centred galaxy keeps its centre, so only the rounding of the side resamples the sky
        # (noise ~3 grey levels per pixel); 40 galaxies measured a median of 2.8
        assert np.abs(prepared.stored.astype(int) - sample.images[i]).mean() < 8
        queries.append(prepared.stored)
    views = model_view(sample.images, 64, 32).reshape(len(sample), -1).astype(np.float32)
    q = model_view(np.stack(queries), 64, 32).reshape(len(queries), -1).astype(np.float32)
    distances = (views ** 2).sum(axis=1)[None, :] - 2 * q @ views.T  # + |q|^2, the same per row
    np.testing.assert_array_equal(distances.argmin(axis=1), typical)


def test_framing_recentres_an_off_centre_galaxy(sample, extents, typical):
    """A galaxy pasted into a corner of a large frame is framed around itself, not the frame centre;
    one already centred keeps the picture's centre (no re-centring on a noisy core estimate)."""
    i = typical[0]
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[20:89, 30:99] = sample.images[i]  # the galaxy's centre at (64.5, 54.5)
    framing = frame_to(frame, float(extents[i]))
    x0, y0, x1, y1 = framing.box
    assert abs((x0 + x1) / 2 - 64.5) <= 2 and abs((y0 + y1) / 2 - 54.5) <= 2
    centred = frame_to(padded(sample.images[i]), float(extents[i]))
    assert (centred.box[0] + centred.box[2]) / 2 == pytest.approx(PAD * 69 / 2, abs=0.5)
    # slightly off the centre of a large picture: a small shift for the picture, a large one for
    # the ~69 px frame taken from it, so the frame follows the galaxy
    frame = np.zeros((1000, 1000, 3), np.uint8)
    frame[446:515, 446:515] = sample.images[i]  # the galaxy's centre at (480.5, 480.5), 19.5 px off
    x0, y0, x1, y1 = frame_to(frame, float(extents[i])).box
    assert abs((x0 + x1) / 2 - 480.5) <= 2 and abs((y0 + y1) / 2 - 480.5) <= 2


def test_framing_to_own_extent_recovers_any_galaxy(sample, extents):
    """Framing to a galaxy's own extent undoes any padding, whatever that extent is."""
    for i in range(5, len(sample), 833):
        framing = frame_to(padded(sample.images[i]), float(extents[i]))
        assert framing.after.fraction == pytest.approx(extents[i], abs=0.01)
        assert abs((framing.box[2] - framing.box[0]) - 69) <= 2


def test_framing_milky_way_is_shrunk_to_catalogue_extent(milky_way_path, sample):
    target = catalogue_extent(sample.images)
    milky_way = decode_image(milky_way_path)
    framing = frame_to(milky_way, target)
    assert framing.before.fraction > target + 0.02  # it fills more of its frame than catalogue galaxies
    assert framing.after.fraction == pytest.approx(target, abs=0.01)
    side = framing.box[2] - framing.box[0]
    assert side > 800 and framing.image.size == (min(side, CANVAS_SIDE),) * 2  # padded, not cropped
    corners = np.asarray(framing.image)[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 0).all()  # padded with its own sky: black
    stored = prepare_upload(milky_way_path, framing="auto", target_fraction=target, sky=None).stored
    assert measure_extent(stored).fraction == pytest.approx(target, abs=0.01)
    assert measure_extent(square_cutout(milky_way)).fraction > target + 0.02


def test_framing_pads_with_measured_sky_colour(sample, extents):
    i = int(np.argmax(extents))  # the largest galaxy: framing to the median must pad it
    framing = frame_to(sample.images[i], float(np.median(extents)))
    assert framing.box[2] - framing.box[0] > 69
    canvas = np.asarray(framing.image)
    assert tuple(canvas[0, 0]) == framing.before.sky
    assert max(framing.before.sky) < 60  # SDSS sky is dark


def test_framing_blank_picture_left_alone():
    blank = np.full((50, 80, 3), 12, np.uint8)
    framing = frame_to(blank, CATALOGUE_EXTENT)
    assert not framing.applied and not framing.before.found
    assert framing.image.size == (80, 50) and "skipped" in framing.describe()
    prepared = prepare_upload(png(blank), framing="auto", sky=None)
    assert (prepared.stored == 12).all()
    assert any("skipped" in note for note in prepared.notes)


def test_framing_rejects_impossible_targets():
    with pytest.raises(ValueError):
        frame_to(np.zeros((20, 20, 3), np.uint8), 0.0)
    with pytest.raises(ValueError):
        frame_to(np.zeros((20, 20, 3), np.uint8), 0.7)
    with pytest.raises(ValueError):
        measure_extents(np.zeros((2, 20, 20, 3), np.float32))


def test_framing_mad_std_is_astropys(sample):
    """The sky noise is astropy's robust sigma of the border ring (odd rows: the same medians)."""
    from astropy.stats import mad_std as astropy_mad_std

    ring = extent._ring(extent._luminance(sample.images[:200]), 4)[:, :-1]  # (200, odd P)
    sky, sigma = extent.mad_std(ring)
    np.testing.assert_array_equal(sky, np.median(ring, axis=1))
    np.testing.assert_allclose(sigma, astropy_mad_std(ring, axis=1), rtol=1e-4)


def test_framing_half_light_radius_matches_photutils_curve_of_growth(sample):
    """Our binned curve of growth gives the radius photutils' exact apertures give, to a tenth of
    a pixel, for real galaxies (half the flux counted within the same aperture)."""
    from photutils.profiles import CurveOfGrowth

    flux, _, _ = extent._flux(sample.images[:300:10])
    radius, cy, cx, aperture = extent.half_light_radius(flux)
    assert np.isfinite(radius).all()
    for i in range(len(flux)):  # photutils counts pixel centres at integers, ours at i + 0.5
        cog = CurveOfGrowth(flux[i], (cx[i] - 0.5, cy[i] - 0.5), np.linspace(0.25, aperture[i], 200))
        assert abs(radius[i] - cog.calc_radius_at_ee(0.5 * cog.profile[-1])) < 0.15, i


def test_framing_canvas_is_bounded_for_a_small_galaxy_in_a_huge_picture():
    """A 5,000 px picture of a small disc padded out to the catalogue's extent: the square taken is
    ~3x the picture, but it is drawn at most CANVAS_SIDE pixels, with the galaxy where it belongs."""
    side = 5000
    yy, xx = np.mgrid[:side, :side]
    disc = (np.hypot(yy - side / 2, xx - side / 2) < side * 0.35).astype(np.uint8) * 220
    framing = frame_to(np.repeat(disc[..., None], 3, axis=2), 0.13)
    assert framing.applied and framing.box[2] - framing.box[0] > side
    assert framing.image.size == (CANVAS_SIDE, CANVAS_SIDE)
    assert framing.after.fraction == pytest.approx(0.13, abs=0.01)
