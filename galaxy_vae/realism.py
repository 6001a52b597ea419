"""Do generated galaxies look like real ones? statmorph morphology compared with real galaxies.

The yardstick of Holzschuh et al. 2022 and Lanusse et al. 2021: statmorph's non-parametric
morphology (Rodriguez-Gomez et al. 2019) -- Gini, M20, concentration C, asymmetry A, smoothness
S -- is measured on real galaxies, on a model's reconstructions and on its samples, and the
distributions are compared per statistic by the 1-D Wasserstein distance W1, against a
real-vs-real baseline (two disjoint halves of the real set).

Measurement (:func:`measure`), per 64x64 uint8 gri colour cutout:

- band: the Rec. 601 luminance 0.299 R + 0.587 G + 0.114 B in uint8 data numbers (DN): mostly G
  (~ SDSS r) with less noise than one channel. Display values of an asinh stretch, not linear
  fluxes, for real and generated alike; the five statistics ignore the flux scale.
- sky: the median and the MAD-based sigma (1.4826 MAD) of the 4-pixel border frame; the median is
  subtracted (statmorph wants background-subtracted images). Sigma is floored at the uint8
  quantisation noise 1/sqrt(12) DN.
- segmentation (as statmorph's tutorial): the image smoothed by a Gaussian of sigma 1 px,
  photutils ``detect_sources`` at 1.5 sky sigma, 5 connected pixels, no deblending. The galaxy is
  the segment under the central pixel (or the nearest one within 4 px); the other segments stay
  in the segmap, so statmorph masks those neighbours and keeps them out of its sky box.
- weightmap: a constant sky sigma (the stretch leaves no meaningful gain); only sn_per_pixel uses it.
- generated images have no sky noise, so their detection threshold and statmorph's sky
  corrections would rest on a sigma near zero: ``measure(..., noise_sigma=sky_noise(real))`` adds
  seeded Gaussian noise at the real sky level first. Real images are measured as they are.
- statmorph runs with its defaults, but only the quantities needed here are evaluated (MID
  statistics, Sersic fits and shape asymmetry are skipped: ~30 % faster, identical values; flags
  that only those would raise are therefore not raised). About 0.12-0.15 s per image on one core.

A measurement is a dict of (N,) arrays: ``gini, m20, concentration, asymmetry, smoothness``,
``axis_ratio`` (1 - ellipticity_asymmetry = 1 / elongation_asymmetry), ``orientation``
(orientation_asymmetry, radians), ``sn_per_pixel``, ``sky_sigma`` (DN) and ``flag`` (statmorph's:
0 good, 1 suspect, >= 2 bad; -1 failed: no central segment or an exception). Only flags 0 and 1
with finite statistics enter W1; the others are counted, never dropped silently.

Report (:func:`realism_report`, JSON-ready: plain floats, ints, strings, None for missing):

- ``samples`` / ``reconstructions`` / ``real_vs_real``: {stat: W1} for the five statistics.
  The real set is split into halves A and B (stratified by label, seeded). The reference is always
  real half B: real_vs_real = W1(real A, real B), reconstructions = W1(reconstructions of A,
  real B), samples = W1(samples, real B). So a perfect reconstruction scores like the baseline,
  and a perfect sampler too when it has as many samples as half A.
- ``n``: number of real galaxies; ``n_measured``: {real, reconstructions, samples} images measured.
- ``noise_sigma``: the sky noise (DN) added to reconstructions and samples.
- ``flags``: {real, reconstructions, samples}: {total, good, suspect, bad, failed, used}, where
  total = good + suspect + bad + failed and used (entering W1) = good + suspect with finite values.
- ``per_class``: {class name: {reconstructions, real_vs_real}} as above within the class (samples
  carry no labels); W1 is None where a side has no usable galaxy.
- ``ratios``: {samples, reconstructions}: {stat: W1 / real_vs_real W1} (None if undefined).
- ``asymmetry_in_real_range``: fraction of usable samples whose asymmetry lies in the 16-84 %
  range of the real ones (about 0.68 for a perfect sampler).
- ``axis_ratio``: {real_median, reconstructions_median, samples_median}.
- ``band_power``: {real, reconstructions, samples}: median share of image power at wavelengths of
  4-8 px (:func:`band_power`, on the images as given, no noise added). Decoder texture such as
  checkerboards raises it, as it raises smoothness; smooth decoders sit below real galaxies,
  whose sky noise contributes to this band, so only an excess over real is suspicious.

:func:`measure_all` + :func:`summarize` are the two halves of :func:`realism_report`;
:func:`histogram_values` gives the usable values per set for plots (not JSON).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import ndimage
from scipy.stats import wasserstein_distance

log = logging.getLogger(__name__)

STATS = ("gini", "m20", "concentration", "asymmetry", "smoothness")
FIELDS = STATS + ("axis_ratio", "orientation", "sn_per_pixel", "sky_sigma")
FAILED = -1
LUMA = np.array([0.299, 0.587, 0.114])
BORDER = 4                       # px of frame used for the sky
QUANT_SIGMA = 1 / np.sqrt(12)    # uint8 rounding noise, DN
DETECT_NSIGMA, DETECT_NPIXELS, DETECT_SMOOTH = 1.5, 5, 1.0
CENTRE_RADIUS = 4                # px: how far off-centre the galaxy's segment may start
BAND = (4.0, 8.0)                # wavelengths (px) of the texture band

# What this module reads (and what those depend on); statmorph evaluates every quantity otherwise.
_QUANTITIES = ("xc_centroid", "yc_centroid", "xc_asymmetry", "yc_asymmetry", "ellipticity_asymmetry",
               "elongation_asymmetry", "orientation_asymmetry", "rpetro_circ", "rpetro_ellip", "r20",
               "r80", "gini", "m20", "sn_per_pixel", "concentration", "asymmetry", "smoothness",
               "sky_mean", "sky_sigma")


def luminance(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) float64 luminance in DN."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB cutouts, got shape {images.shape}")
    return np.asarray(images, dtype=np.float64) @ LUMA


def _border(image: np.ndarray) -> np.ndarray:
    b = BORDER
    return np.concatenate([image[:b].ravel(), image[-b:].ravel(),
                           image[b:-b, :b].ravel(), image[b:-b, -b:].ravel()])


def _sky(image: np.ndarray) -> tuple[float, float]:
    """Median and robust sigma (1.4826 MAD, floored at uint8 rounding) of the border frame."""
    border = _border(image)
    median = float(np.median(border))
    sigma = 1.4826 * float(np.median(np.abs(border - median)))
    return median, max(sigma, QUANT_SIGMA)


def sky_noise(real_images: np.ndarray) -> float:
    """Typical sky noise (DN, luminance) of real cutouts: the median of per-image border sigmas."""
    return float(np.median([_sky(im)[1] for im in luminance(real_images)]))


def segment(image: np.ndarray, sigma: float) -> tuple[np.ndarray, int]:
    """Segmap of a background-subtracted image and the label of the central galaxy (0: none)."""
    from photutils.segmentation import detect_sources

    smooth = ndimage.gaussian_filter(image, DETECT_SMOOTH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no sources found" is reported as label 0
        seg = detect_sources(smooth, DETECT_NSIGMA * sigma, DETECT_NPIXELS)  # positional: photutils 2 & 3
    if seg is None:
        return np.zeros(image.shape, dtype=np.int32), 0
    segmap = np.asarray(seg.data, dtype=np.int32)
    cy, cx = image.shape[0] // 2, image.shape[1] // 2
    if segmap[cy, cx]:
        return segmap, int(segmap[cy, cx])
    ys, xs = np.nonzero(segmap)
    d2 = (ys - cy) ** 2 + (xs - cx) ** 2
    i = int(np.argmin(d2))
    return segmap, int(segmap[ys[i], xs[i]]) if d2[i] <= CENTRE_RADIUS ** 2 else 0


@functools.lru_cache(maxsize=1)
def _source_morphology_class():
    import statmorph  # imported on first use: importing this module stays cheap

    class _NeededOnly(statmorph.SourceMorphology):
        # statmorph evaluates all its quantities eagerly; the values are lazy properties, so
        # evaluating a subset gives the same numbers. Should statmorph rename this hook, the
        # override is simply not called and everything is computed (slower, same values).
        def _calculate_morphology(self):
            for q in _QUANTITIES:
                _ = self[q]

    return _NeededOnly


def morphology(image: np.ndarray, segmap: np.ndarray, label: int, **statmorph_kwargs) -> dict:
    """statmorph on one background-subtracted float image; statmorph_kwargs as SourceMorphology's
    (mask, gain or weightmap, psf, ...). Returns {field: float, "flag": int}."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statmorph warns per image; the flag carries the verdict
        m = _source_morphology_class()(image, segmap, label, **statmorph_kwargs)
    out = {s: float(m[s]) for s in STATS}
    out.update(axis_ratio=1.0 - float(m.ellipticity_asymmetry),
               orientation=float(m.orientation_asymmetry),
               sn_per_pixel=float(m.sn_per_pixel), flag=int(m.flag))
    return out


def _measure_one(lum: np.ndarray) -> dict:
    median, sigma = _sky(lum)
    row = {**dict.fromkeys(FIELDS, float("nan")), "sky_sigma": sigma, "flag": FAILED}
    try:
        image = lum - median
        segmap, label = segment(image, sigma)
        if label == 0:
            log.debug("no segment at the centre")
            return row
        row.update(morphology(image, segmap, label, weightmap=np.full(image.shape, sigma)))
    except Exception as exc:  # one odd image must not end a run of hundreds; it is counted
        log.debug("statmorph failed: %r", exc)
    return row


def _measure_chunk(lums: np.ndarray) -> list[dict]:
    return [_measure_one(lum) for lum in lums]


def measure(images: np.ndarray, noise_sigma: float | None = None,
            rng: np.random.Generator | int | None = 0, processes: int = 1) -> dict[str, np.ndarray]:
    """statmorph morphology of (N, H, W, 3) uint8 cutouts; see the module docstring.

    noise_sigma: Gaussian sky noise (DN) added first (generated images); None for real ones.
    The noise is drawn for the whole stack up front, so results do not depend on ``processes``.
    processes > 1 uses a spawn process pool: a calling script needs the usual
    ``if __name__ == "__main__":`` guard (python -m, pytest and streamlit have it).
    """
    lum = luminance(images)
    if noise_sigma:
        lum = lum + np.random.default_rng(rng).normal(0.0, noise_sigma, lum.shape)
    t0 = time.perf_counter()
    if processes > 1 and len(lum) > 1:
        chunks = np.array_split(lum, min(len(lum), 4 * processes))
        # spawn: safe in a process that also runs torch or streamlit threads
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = [r for chunk in pool.map(_measure_chunk, chunks) for r in chunk]
    else:
        rows = _measure_chunk(lum)
    out = {f: np.array([r[f] for r in rows], dtype=np.float64) for f in FIELDS}
    out["flag"] = np.array([r["flag"] for r in rows], dtype=np.int64)
    log.info("statmorph on %d images in %.1f s (%d processes): %s", len(lum),
             time.perf_counter() - t0, processes, flag_counts(out))
    return out


def usable(m: dict) -> np.ndarray:
    """Mask of measurements that enter W1: statmorph flag 0 or 1 and finite statistics."""
    ok = (m["flag"] >= 0) & (m["flag"] <= 1)
    for s in STATS:
        ok &= np.isfinite(m[s])
    return ok


def flag_counts(m: dict) -> dict[str, int]:
    f = m["flag"]
    return {"total": int(f.size), "good": int(np.sum(f == 0)), "suspect": int(np.sum(f == 1)),
            "bad": int(np.sum(f >= 2)), "failed": int(np.sum(f == FAILED)), "used": int(usable(m).sum())}


def subset(m: dict | None, index: np.ndarray) -> dict | None:
    return None if m is None else {k: v[index] for k, v in m.items()}


def compare(a: dict | None, b: dict | None) -> dict[str, float | None]:
    """{stat: W1 between the usable values of measurements a and b} (None if a side is empty)."""
    out = dict.fromkeys(STATS)
    if a is None or b is None:
        return out
    ua, ub = usable(a), usable(b)
    if ua.any() and ub.any():
        for s in STATS:
            out[s] = float(wasserstein_distance(a[s][ua], b[s][ub]))
    return out


def band_power(images: np.ndarray, band: tuple[float, float] = BAND) -> np.ndarray:
    """(N,) share of each image's power (luminance, mean removed, Hann window) at wavelengths
    band[0]..band[1] px, from its radially binned power spectrum."""
    lum = luminance(images)
    h, w = lum.shape[1:]
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2((lum - lum.mean(axis=(1, 2), keepdims=True)) * window)) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))  # cycles/px
    radius = np.rint(k * max(h, w)).astype(int).ravel()       # radial bins of 1/size cycles/px
    flat = power.reshape(len(lum), -1)
    ring = np.stack([np.bincount(radius, weights=p) for p in flat])  # power summed per ring
    wavelength = max(h, w) / np.maximum(np.arange(ring.shape[1]), 1e-9)
    in_band = (wavelength >= band[0]) & (wavelength <= band[1])
    total = ring[:, 1:].sum(axis=1)  # everything but the mean
    return ring[:, in_band].sum(axis=1) / np.where(total > 0, total, 1.0)


def halves(n: int, labels: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint halves A, B of range(n), stratified by label."""
    labels = np.zeros(n, dtype=int) if labels is None else np.asarray(labels)
    a, b = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        a.append(rows[: (len(rows) + 1) // 2])
        b.append(rows[(len(rows) + 1) // 2:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def measure_all(real: np.ndarray, reconstructions: np.ndarray | None, samples: np.ndarray | None,
                labels: np.ndarray | None = None, noise_sigma: float | None = None,
                rng: np.random.Generator | int | None = 0, processes: int = 1) -> dict:
    """Everything the report needs: real measured as is, reconstructions of half A and samples
    with sky noise; reconstructions[i] is the model's reconstruction of real[i]."""
    rng = np.random.default_rng(rng)
    if noise_sigma is None:
        noise_sigma = sky_noise(real)
    a, b = halves(len(real), labels, rng)
    rec = None if reconstructions is None else np.asarray(reconstructions)[a]
    return {
        "noise_sigma": float(noise_sigma), "half_a": a, "half_b": b,
        "labels": None if labels is None else np.asarray(labels),
        "real": measure(real, None, rng, processes),
        "reconstructions": None if rec is None else measure(rec, noise_sigma, rng, processes),
        "samples": None if samples is None else measure(samples, noise_sigma, rng, processes),
        "band_power": {"real": band_power(real),
                       "reconstructions": None if rec is None else band_power(rec),
                       "samples": None if samples is None else band_power(samples)},
    }


def _num(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _median(values: np.ndarray | None) -> float | None:
    return None if values is None or not np.isfinite(values).any() else _num(np.nanmedian(values))


def _ratio(w: dict, base: dict) -> dict:
    return {s: _num(w[s] / base[s]) if w[s] is not None and base[s] else None for s in STATS}


def summarize(ms: dict, class_names: Sequence[str] | None = None) -> dict:
    """The JSON-ready report of :func:`measure_all`'s output (keys: module docstring)."""
    real, rec, smp = ms["real"], ms["reconstructions"], ms["samples"]
    sets = {"real": real, "reconstructions": rec, "samples": smp}
    a, b = ms["half_a"], ms["half_b"]
    real_a, real_b = subset(real, a), subset(real, b)
    rvr = compare(real_a, real_b)
    report = {
        "samples": compare(smp, real_b), "reconstructions": compare(rec, real_b), "real_vs_real": rvr,
        "n": int(len(real["flag"])),
        "n_measured": {k: None if m is None else int(len(m["flag"])) for k, m in sets.items()},
        "noise_sigma": _num(ms["noise_sigma"]),
        "flags": {k: None if m is None else flag_counts(m) for k, m in sets.items()},
        "per_class": {},
    }
    report["ratios"] = {k: _ratio(report[k], rvr) for k in ("samples", "reconstructions")}
    if ms["labels"] is not None:
        la, lb = ms["labels"][a], ms["labels"][b]
        for c in np.unique(ms["labels"]):
            name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else c
            ref = subset(real_b, np.flatnonzero(lb == c))
            report["per_class"][str(name)] = {
                "reconstructions": compare(subset(rec, np.flatnonzero(la == c)), ref),
                "real_vs_real": compare(subset(real_a, np.flatnonzero(la == c)), ref)}
    report["asymmetry_in_real_range"] = None
    if smp is not None and usable(real).any() and usable(smp).any():
        lo, hi = np.percentile(real["asymmetry"][usable(real)], [16, 84])
        sa = smp["asymmetry"][usable(smp)]
        report["asymmetry_in_real_range"] = float(np.mean((sa >= lo) & (sa <= hi)))
    report["axis_ratio"] = {f"{k}_median": None if m is None else _median(m["axis_ratio"][usable(m)])
                            for k, m in sets.items()}
    report["band_power"] = {k: _median(v) for k, v in ms["band_power"].items()}
    return report


def realism_report(real: np.ndarray, reconstructions: np.ndarray | None, samples: np.ndarray | None,
                   labels: np.ndarray | None = None, class_names: Sequence[str] | None = None,
                   noise_sigma: float | None = None, rng: np.random.Generator | int | None = 0,
                   processes: int = 1) -> dict:
    """statmorph realism of a model's reconstructions and samples against real cutouts (uint8
    (N, 64, 64, 3) each); noise_sigma None: :func:`sky_noise` of ``real``. JSON-ready dict."""
    return summarize(measure_all(real, reconstructions, samples, labels, noise_sigma, rng, processes),
                     class_names)


def histogram_values(ms: dict) -> dict[str, dict[str, np.ndarray]]:
    """{set: {stat: usable values}} from :func:`measure_all`'s output, for histograms (not JSON);
    sets: real, real_a, real_b, reconstructions, samples."""
    sets = {"real": ms["real"], "real_a": subset(ms["real"], ms["half_a"]),
            "real_b": subset(ms["real"], ms["half_b"]),
            "reconstructions": ms["reconstructions"], "samples": ms["samples"]}
    return {k: {s: m[s][usable(m)] for s in STATS + ("axis_ratio",)}
            for k, m in sets.items() if m is not None}
