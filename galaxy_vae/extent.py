"""Where a galaxy is in its picture and how large it is: the measurement behind automatic framing,
done the same way for one upload and for a whole catalogue (vectorised over N).

The extent measure (same code for one upload and for a whole catalogue, vectorised over N):

    luminance Y = 0.299 R + 0.587 G + 0.114 B (PIL's "L", 8-bit)
    sky         = median of a border ring (6 % of the side); noise = mad_std of that ring
    flux        = Y - sky where Y > sky + max(3 * noise, 1 grey level), else 0
    centre      = the galaxy's core: start at the frame centre, follow the light in the middle
                  half of the frame, then re-centre within a box of 0.75 x its rms radius
    edge        = first 1-px ring around the centre less than half covered by flux pixels
    extent      = half-light radius (holding half the flux within 1.5 x edge of the centre)
                  / shorter side of the frame

Why the half-light radius: a 90 % radius lives in the faint outskirts and moves with sky noise,
neighbouring stars, depth and stretch (SDSS JPEGs are asinh-stretched, a NASA render is not); the
50 % radius is set by the galaxy's bright body. Why the edge: stars and neighbours cover only a
short arc of any ring, so they never extend it and their light drops out, and the same galaxy
measures the same in a 3x wider field.

A picture that was already padded with a flat colour (letterboxing, or a cutout pasted into a
larger black frame) measures its sky on the edge of the picture itself, not on the padding: the
flat margin is detected and skipped, so padding never changes the measured size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# Median half-light radius / frame side over all 6,664 galaxies of the offline sample
# (data/gz1_sample.h5): `catalogue_extent(images, max_images=None)`. A test re-measures it, so it
# cannot drift from the data. Callers with another dataset pass catalogue_extent(their images).
CATALOGUE_EXTENT = 0.1317

BORDER = 0.06  # sky ring width as a fraction of the side (4 px of a 69 px cutout)
NOISE_CUT = 3.0  # a pixel is galaxy when it is this many sky-noise sigmas above the sky
MIN_CUT = 1.0  # ... and at least this many grey levels above it (noise-free renders have sigma 0)
PAD_TOLERANCE = 2  # grey levels: pixels this close to a flat margin's colour count as margin
MEASURE_SIDE = 138  # larger pictures are block-averaged to >= this side before measuring
BIN = 0.25  # px: radial bin of the growth curve (interpolated within a bin)
SAMPLE_IMAGES = 2000  # catalogue_extent measures this many evenly spaced galaxies by default
CHUNK = 256  # images per vectorised block: (256, 69, 69) float64 arrays of ~10 MB
CENTRE_STEPS = 3  # re-centring steps of each stage of _core_centres (converged to < 0.1 px)
ISO_COVERAGE = 0.5  # the galaxy ends at the first ring less than half covered by pixels above the cut
ISO_APERTURE = 1.5  # flux counts within 1.5x that edge (faint outskirts, cut at an angle)


@dataclass(frozen=True)
class Extent:
    """Where a galaxy is in its frame and how large it is."""

    fraction: float  # half-light radius / shorter side of the frame; nan when nothing was found
    radius: float  # half-light radius in pixels of the frame
    centre: tuple[float, float]  # (x, y) of the galaxy's core in pixels (pixel i spans [i, i + 1))
    sky: tuple[int, int, int]  # RGB colour of the sky around the galaxy (used for padding)
    noise: float  # sky noise sigma in grey levels
    size: tuple[int, int]  # (width, height) of the frame

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.fraction))


def _as_array(img: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image or an array, block-averaged when large."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    img = img.convert("RGB")
    factor = min(img.size) // MEASURE_SIDE
    if factor > 1:
        img = img.reduce(factor)  # box average; fractions of the frame are resolution-free
    return np.asarray(img)


def _ring(values: np.ndarray, w: int) -> np.ndarray:
    """(N, H, W, ...) -> (N, ring pixels, ...): the border ring of width ``w``."""
    n, h = values.shape[:2]
    parts = (values[:, :w], values[:, h - w:], values[:, w:h - w, :w], values[:, w:h - w, -w:])
    return np.concatenate([p.reshape((n, -1) + values.shape[3:]) for p in parts], axis=1)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) uint8 luminance, one C pass (PIL's Rec. 601 "L")."""
    n, h, w, _ = rgb.shape
    tall = Image.fromarray(np.ascontiguousarray(rgb).reshape(n * h, w, 3))  # (N*H, W, 3) strip
    return np.asarray(tall.convert("L")).reshape(n, h, w)


def _median(values: np.ndarray) -> np.ndarray:
    """Row (lower) medians of a (N, P) uint8 array; numpy radix-sorts small integers in O(P)."""
    return np.sort(values, axis=1, kind="stable")[:, (values.shape[1] - 1) // 2]


def mad_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row medians and robust standard deviations of (N, P) uint8 values: 1.4826 x the median
    absolute deviation, as ``astropy.stats.mad_std`` (equal for odd P; lower medians otherwise),
    on small integers so each median is a radix sort. Stars in the sky ring do not move it."""
    median = _median(values)  # (N,) uint8
    return median, 1.4826 * _median(np.abs(values.astype(np.int16) - median[:, None]).astype(np.uint8))


def _flux(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 -> galaxy flux (N, H, W) float64, sky noise (N,), and ``flat`` (N,):
    an outermost row or column of one grey level, maybe a margin to look inside (_content_box)."""
    h, w = rgb.shape[1:3]
    y = _luminance(rgb)  # (N, H, W) uint8
    ring = _ring(y, max(1, round(BORDER * min(h, w))))  # (N, P) uint8
    sky, noise = mad_std(ring)  # (N,) uint8 sky level, (N,) float sky noise
    cut = sky + np.maximum(NOISE_CUT * noise, MIN_CUT)  # (N,) float
    # float64 (and intp below) because np.bincount wants exactly those: a cast is an extra pass
    flux = np.subtract(y, sky[:, None, None], dtype=np.float64)
    flux *= y > cut[:, None, None]  # only pixels clearly above the sky count
    flat = np.zeros(len(y), dtype=bool)
    for side in (y[:, 0], y[:, -1], y[:, :, 0], y[:, :, -1]):  # (N, W) or (N, H) each
        near = np.abs(side.astype(np.int16) - _median(side)[:, None]) <= PAD_TOLERANCE
        flat |= near.mean(axis=1) >= 0.95
    return flux, noise, flat


def _core_centres(flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) flux -> the galaxy's core (cy, cx) in pixels, each (N,): the main light near the
    middle, as in catalogue cutouts. Stars and neighbours pull a plain centroid by 5 px or more
    in one catalogue cutout in ten; the shrinking box keeps them out."""
    n, h, w = flux.shape
    f32 = flux.astype(np.float32)  # box sums as batched float32 mat-vec products (fast)
    rows, cols = np.arange(h) + 0.5, np.arange(w) + 0.5
    by_row, by_col = flux.sum(axis=2), flux.sum(axis=1)  # (N, H), (N, W)
    total = np.maximum(by_row.sum(axis=1), 1e-12)

    def box_centroid(cy, cx, half):
        in_rows = (np.abs(rows[None, :] - cy[:, None]) < half[:, None]).astype(np.float32)  # (N, H)
        in_cols = (np.abs(cols[None, :] - cx[:, None]) < half[:, None]).astype(np.float32)  # (N, W)
        row_flux = (f32 @ in_cols[:, :, None])[:, :, 0] * in_rows  # (N, H): box flux per row
        col_flux = (in_rows[:, None, :] @ f32)[:, 0, :] * in_cols  # (N, W): per column
        inside = row_flux.sum(axis=1, dtype=np.float64)
        ok = inside > 0  # an empty box keeps its centre
        safe = np.where(ok, inside, 1.0)
        return np.where(ok, row_flux @ rows / safe, cy), np.where(ok, col_flux @ cols / safe, cx), ok

    wide = np.full(n, min(h, w) / 4)
    cy, cx, ok = box_centroid(np.full(n, h / 2), np.full(n, w / 2), wide)
    # nothing in the middle half: start from all the light instead
    cy, cx = np.where(ok, cy, by_row @ rows / total), np.where(ok, cx, by_col @ cols / total)
    for _ in range(CENTRE_STEPS - 1):
        cy, cx, _ = box_centroid(cy, cx, wide)
    spread = (by_row * (rows[None, :] - cy[:, None]) ** 2).sum(axis=1) \
        + (by_col * (cols[None, :] - cx[:, None]) ** 2).sum(axis=1)
    half = np.clip(0.75 * np.sqrt(spread / total), 1.0, wide)
    for _ in range(CENTRE_STEPS):
        cy, cx, _ = box_centroid(cy, cx, half)
    return cy, cx


def _enclosed(curve: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Flux within ``radius`` (N,) from cumulative radial curves (N, nbins), linear within a bin."""
    n, nbins = curve.shape
    pos = np.clip(radius / BIN, 0, nbins - 1)  # curve[k] holds the flux at radii < (k + 1) * BIN
    k = pos.astype(np.intp)
    before = np.where(k > 0, curve[np.arange(n), np.maximum(k - 1, 0)], 0.0)
    return before + (pos - k) * (curve[np.arange(n), k] - before)


def _radius_holding(curve: np.ndarray, level: np.ndarray) -> np.ndarray:
    """The radius (N,) within which cumulative curves (N, nbins) reach ``level`` (N,)."""
    n, nbins = curve.shape
    k = np.minimum((curve < level[:, None]).sum(axis=1), nbins - 1)  # first bin reaching level
    below = np.where(k > 0, curve[np.arange(n), np.maximum(k - 1, 0)], 0.0)
    inside = curve[np.arange(n), k] - below
    return BIN * (k + (level - below) / np.where(inside > 0, inside, 1.0))


def _isophotal_edge(rings: np.ndarray) -> np.ndarray:
    """(N, R) flux-pixel counts per 1-px ring around the core -> edge radius (N,) in px: where
    coverage falls below ISO_COVERAGE past the first solid ring (the core may sit in a dark lane)
    and past ring 2 (too few pixels to judge). No solid ring (a faint, patchy object): inf."""
    n, r = rings.shape
    coverage = rings / (np.pi * (2 * np.arange(r) + 1))  # ring k spans pi ((k + 1)^2 - k^2)
    solid = coverage >= ISO_COVERAGE
    start = np.maximum(solid.argmax(axis=1), 2)
    bare = ~solid & (np.arange(r)[None, :] > start[:, None])
    k = bare.argmax(axis=1)  # the first bare ring
    last, first = coverage[np.arange(n), k - 1], coverage[np.arange(n), k]
    crossing = k - 0.5 + np.clip((last - ISO_COVERAGE) / np.maximum(last - first, 1e-12), 0.0, 1.0)
    return np.where(solid.any(axis=1) & bare.any(axis=1), crossing, np.inf)


def half_light_radius(flux: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, H, W) flux -> half-light radius, core y, core x and the aperture radius (px; nan where
    no flux): the radius holding half the flux counted within ISO_APERTURE x the isophotal edge
    around the core, read off each galaxy's curve of growth (see module docstring)."""
    n, h, w = flux.shape
    cy, cx = _core_centres(flux)
    rows, cols = np.arange(h) + 0.5, np.arange(w) + 0.5  # pixel i spans [i, i + 1)
    dy2 = ((rows[None, :] - cy[:, None]) ** 2).astype(np.float32)  # (N, H)
    dx2 = ((cols[None, :] - cx[:, None]) ** 2).astype(np.float32)  # (N, W)
    nbins = int(np.hypot(h, w) / BIN) + 2
    r = dy2[:, :, None] + dx2[:, None, :]  # (N, H, W) squared radius, then bin number in place
    np.sqrt(r, out=r)
    r *= 1 / BIN
    index = r.astype(np.intp)  # intp and float64 weights: what np.bincount takes without a cast
    index += (nbins * np.arange(n, dtype=np.intp))[:, None, None]
    curve = np.bincount(index.ravel(), weights=flux.ravel(), minlength=n * nbins)
    curve = curve.reshape(n, nbins).cumsum(axis=1)  # (N, nbins) curves of growth
    covered = np.bincount(index[flux > 0], minlength=n * nbins).reshape(n, nbins)
    rings = covered[:, : nbins // 4 * 4].reshape(n, -1, 4).sum(axis=2)  # (N, R) per 1-px ring
    aperture = np.minimum(ISO_APERTURE * _isophotal_edge(rings), min(h, w) / 2)
    inside = _enclosed(curve, aperture)
    radius = _radius_holding(curve, 0.5 * inside)
    found = np.where(inside > 0, 1.0, np.nan)
    return radius * found, cy * found, cx * found, aperture * found


def _sky_colour(rgb: np.ndarray) -> tuple[int, int, int]:
    """Median RGB of the sky ring of one (H, W, 3) picture: the colour to pad it with."""
    bw = max(1, round(BORDER * min(rgb.shape[:2])))
    return tuple(int(round(v)) for v in np.median(_ring(rgb[None], bw)[0], axis=0))


def _margin(lines: np.ndarray) -> int:
    """How many leading lines of (L, P, 3) pixels form a flat margin of the first line's colour."""
    colour = np.median(lines[0], axis=0)
    near = np.abs(lines.astype(np.int16) - colour).max(axis=2) <= PAD_TOLERANCE  # (L, P)
    flat = near.mean(axis=1) >= 0.95
    return len(flat) if flat.all() else int(np.argmin(flat))


def _content_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the picture inside flat margins (each side on its own, so
    letterbox bars count too); the whole frame if none. Noisy sky is never 95 % flat."""
    h, w, _ = rgb.shape
    cols = rgb.transpose(1, 0, 2)  # (W, H, 3): columns as lines
    top, bottom = _margin(rgb), _margin(rgb[::-1])
    left, right = _margin(cols), _margin(cols[::-1])
    if h - top - bottom < 8 or w - left - right < 8:
        return 0, 0, w, h  # (almost) nothing but margin: measure the frame as it is
    return left, top, w - right, h - bottom


def measure_extent(img: Image.Image | np.ndarray) -> Extent:
    """Measure the galaxy in one picture (PIL image or (H, W, 3) uint8 array); see module docstring."""
    if isinstance(img, np.ndarray):
        full_w, full_h = img.shape[1], img.shape[0]
    else:
        full_w, full_h = img.size
    rgb = _as_array(img)
    scale = full_w / rgb.shape[1]  # measured pixels -> frame pixels
    left, top, right, bottom = _content_box(rgb)
    content = rgb[top:bottom, left:right]
    flux, noise, _ = _flux(content[None])
    radius, cy, cx, _ = half_light_radius(flux)
    found = bool(np.isfinite(radius[0]))
    cy, cx = (cy[0], cx[0]) if found else (content.shape[0] / 2, content.shape[1] / 2)
    return Extent(
        fraction=float(radius[0] * scale / min(full_w, full_h)) if found else float("nan"),
        radius=float(radius[0] * scale),
        centre=((cx + left) * scale, (cy + top) * scale),
        sky=_sky_colour(content),
        noise=float(noise[0]),
        size=(full_w, full_h),
    )


def measure_extents(images: np.ndarray) -> np.ndarray:
    """Extent fractions of (N, H, W, 3) uint8 cutouts -> (N,) float (nan where nothing was found).
    Vectorised in blocks; equal to measure_extent per image (used for the few with a flat edge)."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    out = np.empty(n, dtype=np.float64)
    flat = np.zeros(n, dtype=bool)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        flux, _, flat[start:stop] = _flux(images[start:stop])
        out[start:stop] = half_light_radius(flux)[0] / min(h, w)
    for i in np.flatnonzero(flat):  # a flat edge may be a margin: measure inside it (rare here)
        out[i] = measure_extent(images[i]).fraction
    return out


def catalogue_extent(images: np.ndarray, max_images: int | None = SAMPLE_IMAGES) -> float:
    """Typical extent (median over galaxies) of a catalogue's (N, H, W, 3) uint8 cutouts.

    At most ``max_images`` evenly spaced galaxies are measured (None: all): enough to pin the
    median to 0.001, in a fixed time however large the catalogue.
    """
    if max_images is not None and len(images) > max_images:
        images = images[np.linspace(0, len(images) - 1, max_images).astype(np.intp)]
    fractions = measure_extents(images)
    fractions = fractions[np.isfinite(fractions)]
    if not len(fractions):
        raise ValueError("no galaxy could be measured in these images")
    return float(np.median(fractions))
