"""Galaxies from the latent space: interpolation between two galaxies, points and paths located on
the map with their nearest real galaxy, the map's extent and grids over it.

    two latent means a, b (d,) --lerp | slerp at ts (T,)--> latents (T, d) --Catalogue.decode--> images
                                          |
                        projection.to_map -> (T, 2) path on the map;  index.query -> nearest galaxy

:func:`lerp` and :func:`slerp` are pure numpy. Decoding always goes through
:meth:`galaxy_vae.catalogue.Catalogue.decode`, so the page, the tests and any script decode the
same latent to the same pixels. For wider latents (the 64-D autoencoder) interpolation runs in the
full latent space; only the map shows the path projected onto the two principal directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from galaxy_vae.catalogue import Catalogue
from galaxy_vae.embed import at_crop
from galaxy_vae.errors import DataError

PARALLEL_EPS = 1e-6  # angles (radians) closer than this to 0 or pi count as parallel / opposite
ZERO_NORM = 1e-12  # a latent shorter than this has no direction


# --- interpolation (pure numpy) -----------------------------------------------------------------

def _check_t(t) -> np.ndarray:
    """t as float64 array; every value must be finite and within [0, 1]."""
    t = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0.0) or np.any(t > 1.0):
        bad = t[~(np.isfinite(t) & (t >= 0.0) & (t <= 1.0))].ravel()
        raise ValueError(f"interpolation parameter t must lie in [0, 1] (0 = first galaxy, 1 = second); "
                         f"found {bad[:5].tolist()}. Extrapolating beyond the two galaxies is not supported.")
    return t


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"interpolation needs two latent vectors of the same length (d,), "
                         f"found shapes {a.shape} and {b.shape}")
    return a, b


def _exact_endpoints(out: np.ndarray, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Return a itself at t == 0 and b at t == 1 (no rounding from the trigonometry)."""
    out[t == 0.0] = a
    out[t == 1.0] = b
    return out


def lerp(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Straight line from a to b: (d,), (d,), t scalar or (T,) -> (d,) or (T, d) float64."""
    a, b = _check_pair(a, b)
    t = _check_t(t)
    out = a + t[..., None] * (b - a)  # (..., 1) * (d,) -> (..., d)
    return _exact_endpoints(out, a, b, t)


def _orthogonal_unit(u: np.ndarray) -> np.ndarray:
    """A unit vector orthogonal to unit u: the least-aligned basis vector, minus its u component."""
    e = np.zeros_like(u)
    e[np.argmin(np.abs(u))] = 1.0
    w = e - (e @ u) * u
    return w / np.linalg.norm(w)


def slerp(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Spherical interpolation for vectors of any length: (d,), (d,), t -> (d,) or (T, d) float64.

    The direction turns at constant angular speed along the great circle from a/|a| to b/|b| while
    the norm moves linearly from |a| to |b|; equal norms therefore stay on their sphere. Special
    cases: a zero vector has no direction, so the other one's is used (the result is then the
    straight line); parallel vectors keep their common direction; opposite vectors turn through an
    arbitrary but fixed orthogonal direction (the great circle is not unique).
    """
    a, b = _check_pair(a, b)
    t = _check_t(t)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    radius = (1.0 - t) * na + t * nb  # shape of t
    if na < ZERO_NORM and nb < ZERO_NORM:
        out = np.zeros(t.shape + a.shape)
    elif na < ZERO_NORM or nb < ZERO_NORM:
        u = b / nb if na < ZERO_NORM else a / na
        out = radius[..., None] * u
    else:
        ua, ub = a / na, b / nb
        omega = float(np.arccos(np.clip(ua @ ub, -1.0, 1.0)))
        tt = t[..., None]
        if omega < PARALLEL_EPS:  # (nearly) parallel: normalised lerp of the directions
            d = (1.0 - tt) * ua + tt * ub
            direction = d / np.linalg.norm(d, axis=-1, keepdims=True)
        elif np.pi - omega < PARALLEL_EPS and a.size > 1:  # opposite: half a turn through w
            w = _orthogonal_unit(ua)
            direction = np.cos(np.pi * tt) * ua + np.sin(np.pi * tt) * w
        elif np.pi - omega < PARALLEL_EPS:  # 1-D opposite: no circle to follow, pass through zero
            return lerp(a, b, t)
        else:
            direction = (np.sin((1.0 - tt) * omega) * ua + np.sin(tt * omega) * ub) / np.sin(omega)
        out = radius[..., None] * direction
    return _exact_endpoints(out, a, b, t)


METHODS = {"linear": lerp, "spherical": slerp}


def interpolate(a: np.ndarray, b: np.ndarray, t, method: str = "linear") -> np.ndarray:
    """``lerp`` or ``slerp`` by name ("linear", "spherical")."""
    if method not in METHODS:
        raise ValueError(f"interpolation method must be one of {sorted(METHODS)}, found {method!r}")
    return METHODS[method](a, b, t)


def frame_ts(n: int) -> np.ndarray:
    """n evenly spaced steps from 0 to 1 inclusive: frame_ts(6) = 0.0, 0.2, ..., 1.0."""
    if int(n) < 2:
        raise ValueError(f"an interpolation strip needs at least 2 frames (both galaxies), found {n}")
    return np.linspace(0.0, 1.0, int(n))


# --- the map's extent --------------------------------------------------------------------------

def latent_bounds(latents: np.ndarray, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per axis of (N, d) latents, widened by ``margin`` of the range on each side."""
    latents = np.asarray(latents, dtype=float)
    lo, hi = latents.min(axis=0), latents.max(axis=0)
    pad = np.maximum(hi - lo, 1e-6) * margin
    return lo - pad, hi + pad


def map_extent(map_xy: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the map: the range its galaxies occupy plus a margin."""
    lo, hi = latent_bounds(map_xy)
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def latent_grid_points(lo: Sequence[float], hi: Sequence[float], n: int) -> np.ndarray:
    """(n*n, 2) cell centres of an n x n grid over [lo, hi], rows from the top (high y) down.

    Decoding these and tiling them n a row (:func:`raster.tile`) gives an image whose extent is
    exactly (lo[0], hi[0], lo[1], hi[1]), oriented like the map (x to the right, y up).
    """
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    assert n >= 1 and lo.shape == hi.shape == (2,), (n, lo, hi)
    frac = (np.arange(n) + 0.5) / n
    xs = lo[0] + frac * (hi[0] - lo[0])
    ys = (lo[1] + frac * (hi[1] - lo[1]))[::-1]  # image rows go down, y goes up
    gx, gy = np.meshgrid(xs, ys)  # (n, n) each, row-major
    return np.column_stack([gx.ravel(), gy.ravel()])


def real_grid_rows(map_xy: np.ndarray, extent, n: int) -> np.ndarray:
    """For an n x n grid over the map ``extent`` (x0, x1, y0, y1), rows from the top: in each cell
    the catalogue galaxy nearest the cell's centre among those inside it, -1 where none is. (n*n,) int64."""
    x0, x1, y0, y1 = (float(v) for v in extent)
    xy = np.asarray(map_xy, dtype=np.float64)
    fx, fy = (xy[:, 0] - x0) / (x1 - x0) * n, (y1 - xy[:, 1]) / (y1 - y0) * n  # cell units, y down
    col, row = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    inside = (col >= 0) & (col < n) & (row >= 0) & (row < n)
    cell = row * n + col
    dist = (fx - col - 0.5) ** 2 + (fy - row - 0.5) ** 2  # to the cell's centre
    galaxies = np.flatnonzero(inside)
    order = galaxies[np.lexsort((dist[galaxies], cell[galaxies]))]  # by cell, nearest first
    first = np.r_[True, cell[order][1:] != cell[order][:-1]]
    out = np.full(n * n, -1, dtype=np.int64)
    out[cell[order][first]] = order[first]
    return out


def cell_sample_rows(map_xy: np.ndarray, extent, n: int, seed: int = 0) -> np.ndarray:
    """One galaxy per occupied cell of an n x n grid over the map ``extent`` (x0, x1, y0, y1): a random
    one among those inside (seeded: the same on every run), so the points keep the catalogue's own
    scatter instead of lining up on the cell centres. Sorted rows, (M,) int64, M <= n*n."""
    x0, x1, y0, y1 = (float(v) for v in extent)
    xy = np.asarray(map_xy, dtype=np.float64)
    col = np.floor((xy[:, 0] - x0) / (x1 - x0) * n).astype(np.int64)
    row = np.floor((y1 - xy[:, 1]) / (y1 - y0) * n).astype(np.int64)
    galaxies = np.flatnonzero((col >= 0) & (col < n) & (row >= 0) & (row < n))
    cell, rank = row * n + col, np.random.default_rng(seed).permutation(len(xy))
    order = galaxies[np.lexsort((rank[galaxies], cell[galaxies]))]  # by cell, then the random rank
    first = np.r_[True, cell[order][1:] != cell[order][:-1]] if len(order) else np.zeros(0, dtype=bool)
    return np.sort(order[first])


# --- points and paths on the map ----------------------------------------------------------------

@dataclass(frozen=True)
class LatentPoints:
    """Points of the latent space with where they lie on the map and their nearest real galaxy."""

    latents: np.ndarray  # (T, d) float32: what the decoder receives
    xy: np.ndarray  # (T, 2) map coordinates (the latent itself when d == 2)
    nearest: np.ndarray  # (T,) int64 catalogue row of the nearest galaxy, in the full latent space
    distances: np.ndarray  # (T,) float64 latent distance to it
    details: np.ndarray | None = None  # (T, D) float32 detail codes (detail VAE); None: typical details

    def decode(self, cat: Catalogue) -> np.ndarray:
        """These points decoded with their details: uint8 (T, S, S, 3)."""
        return cat.decode(self.latents, self.details)


def locate_latents(cat: Catalogue, latents: np.ndarray, details: np.ndarray | None = None) -> LatentPoints:
    """Place latents (T, d) on the map and find each one's nearest catalogue galaxy; ``details``
    (T, D) ride along to the decoder."""
    latents = np.atleast_2d(np.asarray(latents, dtype=np.float32))
    found = cat.index.query(latents, 1)
    if details is not None:
        details = np.atleast_2d(np.asarray(details, dtype=np.float32))
    return LatentPoints(latents, cat.projection.to_map(latents), found.indices[:, 0], found.distances[:, 0], details)


def map_point(cat: Catalogue, xy: Sequence[float], details: np.ndarray | None = None) -> LatentPoints:
    """The latent behind map position (z1, z2): the point itself for a 2-D latent, else the point
    on the plane of the two principal directions through the catalogue's centre. ``details`` (D,)
    or (1, D): the detail code to decode it with (see :func:`point_details`)."""
    return locate_latents(cat, cat.projection.to_latent(np.asarray(xy, dtype=np.float64).reshape(1, 2)), details)


def path_between(cat: Catalogue, row_a: int, row_b: int, ts, method: str = "linear") -> LatentPoints:
    """Interpolate between catalogue rows a and b at ts (T,) in the full latent; with a detail
    code, their detail codes are interpolated the same way, so the path carries both."""
    ts = np.atleast_1d(_check_t(ts))
    details = None
    if cat.has_detail:
        details = interpolate(cat.details[row_a], cat.details[row_b], ts, method)
    return locate_latents(cat, interpolate(cat.vectors[row_a], cat.vectors[row_b], ts, method), details)


# --- details for map points (the detail VAE) ---------------------------------------------------

DETAIL_MODES = ("new details", "keep details", "typical details")


def detail_noise(seed: int, dim: int) -> np.ndarray:
    """The standard-normal draw (dim,) float32 behind seeded details: numpy's PCG64, so the same
    seed gives the same details on every machine."""
    return np.random.default_rng(int(seed)).standard_normal(int(dim)).astype(np.float32)


@torch.inference_mode()
def prior_details(cat: Catalogue, latents: np.ndarray, seed: int | None) -> np.ndarray:
    """Details (T, D) for map latents (T, d) drawn from the model's prior p(d | z) with one seeded
    draw shared by every point (``seed`` None: the prior's mean, the typical details)."""
    model = cat.model
    z = torch.from_numpy(np.atleast_2d(np.asarray(latents, dtype=np.float32)))
    if seed is None:
        return model.prior_detail_dist(z)[0].numpy()
    noise = torch.from_numpy(np.broadcast_to(detail_noise(seed, model.detail_dim), (len(z), model.detail_dim)).copy())
    return model.prior_detail(z, noise=noise).numpy()


def point_details(cat: Catalogue, xy: Sequence[float], mode: str, seed: int,
                  anchor: Sequence[float] | None = None) -> np.ndarray | None:
    """The detail code (1, D) the generator decodes map position ``xy`` with (None: no detail code).

    - "new details": drawn for this very point from p(d | z) with ``seed`` (same seed and point,
      same galaxy; moving the point redraws them from the new point's prior with the same draw);
    - "keep details": the details drawn with ``seed`` at ``anchor`` (the map position where they
      were chosen), carried unchanged to every point;
    - "typical details": the prior's mean at this point.
    """
    if not cat.has_detail:
        return None
    if mode not in DETAIL_MODES:
        raise ValueError(f"detail mode must be one of {DETAIL_MODES}, found {mode!r}")
    where = anchor if mode == "keep details" and anchor is not None else xy
    z = cat.projection.to_latent(np.asarray(where, dtype=np.float64).reshape(1, 2))
    return prior_details(cat, z, None if mode == "typical details" else seed)


def slider_range(map_xy: np.ndarray, margin: float = 0.1, steps: int = 200) -> dict[str, list]:
    """Slider settings per map axis: the range the data occupies widened by ``margin`` of it on each
    side, a start at the median galaxy, ``steps`` steps and a printf format that tells steps apart:
    {"lo", "hi", "start", "step", "format"} -> [x, y]."""
    lo, hi = latent_bounds(map_xy, margin)
    start = np.clip(np.median(map_xy, axis=0), lo, hi)
    step = (hi - lo) / steps
    decimals = np.clip(1 - np.floor(np.log10(step)), 0, 12).astype(int)  # 2 significant digits of a step
    return {"lo": lo.tolist(), "hi": hi.tolist(), "start": start.tolist(), "step": step.tolist(),
            "format": [f"%.{d}f" for d in decimals]}


# --- choosing galaxies --------------------------------------------------------------------------

def find_row(ids: np.ndarray, galaxy_id: str) -> int:
    """Catalogue row of ``galaxy_id`` (exact match after trimming spaces)."""
    text = str(galaxy_id).strip()
    hits = np.flatnonzero(np.asarray(ids) == text)
    if not len(hits):
        raise DataError(f"No galaxy with id {text!r} in the catalogue", expected="an id of the dataset",
                        found=f"{len(ids):,} ids, none equal to {text!r}",
                        fix="Copy an id from a caption or the latent map's hover, or pick galaxies another way.")
    return int(hits[0])


def pair_after_click(pair: tuple[int, int], rows: Sequence[int], end: str) -> tuple[tuple[int, int], str]:
    """The pair of galaxies after a map selection of ``rows``, and which end ("A"/"B") the next click sets.

    Two or more rows (a box or lasso) replace both ends; one row replaces ``end`` and hands the next
    click to the other end, so two clicks choose a pair; nothing selected changes nothing.
    """
    rows = [int(r) for r in rows]
    if len(rows) >= 2:
        return (rows[0], rows[1]), end
    if len(rows) == 1:
        return ((rows[0], pair[1]), "B") if end == "A" else ((pair[0], rows[0]), "A")
    return tuple(pair), end


def random_pair(labels: np.ndarray, class_a: int, class_b: int, seed: int = 0,
                class_names: Sequence[str] | None = None) -> tuple[int, int]:
    """Two different rows, one of class a and one of class b, drawn with ``seed`` (reproducible)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    name = (lambda c: class_names[c]) if class_names is not None else str
    rows_a = np.flatnonzero(labels == class_a)
    if not len(rows_a):
        raise DataError(f"No galaxy of class {name(class_a)}", expected="at least one galaxy of the class",
                        found="none in this dataset", fix="Choose another class.")
    row_a = int(rng.choice(rows_a))
    rows_b = np.flatnonzero((labels == class_b) & (np.arange(len(labels)) != row_a))
    if not len(rows_b):
        raise DataError(f"No second galaxy of class {name(class_b)}", expected="a galaxy other than the first",
                        found="no other galaxy of the class", fix="Choose another class.")
    return row_a, int(rng.choice(rows_b))


# --- deep links -----------------------------------------------------------------------------------

LINK_KEYS = ("gen_z1", "gen_z2", "gen_detail_mode", "gen_detail_seed", "gen_id_a", "gen_id_b", "gen_t")
MAX_SEED = 2**31 - 1


def read_link(params: Mapping[str, str], spec: dict, ids: np.ndarray) -> tuple[dict, list[str]]:
    """The generator's settings from a link's query parameters (keys :data:`LINK_KEYS`): (valid
    values by key, one note per value that is not valid, naming the default used instead).
    ``spec`` is :func:`slider_range` of the map, ``ids`` the catalogue's galaxy ids."""
    out, notes = {}, []

    def number(key: str, lo: float, hi: float, what: str, default: str, integer: bool = False) -> None:
        raw = str(params[key]).strip()
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not lo <= value <= hi:
            notes.append(f"{key}={raw!r} in the link is not {what} between {lo:g} and {hi:g}: {default} is used.")
        else:
            out[key] = value

    for i, key in enumerate(("gen_z1", "gen_z2")):
        if key in params:
            number(key, spec["lo"][i], spec["hi"][i], "a map coordinate", "the median galaxy's")
    if "gen_detail_seed" in params:
        number("gen_detail_seed", 0, MAX_SEED, "a whole number", "seed 0", integer=True)
    if "gen_t" in params:
        number("gen_t", 0.0, 1.0, "a step", "t = 0.5")
    if "gen_detail_mode" in params:
        if params["gen_detail_mode"] in DETAIL_MODES:
            out["gen_detail_mode"] = params["gen_detail_mode"]
        else:
            notes.append(f"gen_detail_mode={params['gen_detail_mode']!r} in the link is not one of "
                         f"{', '.join(DETAIL_MODES)}: {DETAIL_MODES[0]} is used.")
    for key in ("gen_id_a", "gen_id_b"):
        if key in params:
            try:
                out[key] = find_row(ids, params[key])
            except DataError:
                notes.append(f"{key}={params[key]!r} in the link is no galaxy of this catalogue: "
                             "a random pair is used.")
    return out, notes


def nearest_real(sim, cat: Catalogue, points: LatentPoints, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nearest real galaxy of each decoded point (``images``: ``points`` decoded by ``cat``'s
    model) under similarity ``sim`` (a catalogue.Similarity): rows (T,) and distances (T,). Under
    the map model's own latent the point itself is compared (exact); under any other similarity
    the decoded image is searched as an upload would be, so the galaxy encoder names the real
    galaxy that looks most like it."""
    if sim.catalogue is cat and not sim.invariant:
        return points.nearest, points.distances
    found = sim.catalogue.query_images(at_crop(images), 1, sim.invariant)  # the ConvVAE's 32 px at 64
    return found.indices[:, 0], found.distances[:, 0]
