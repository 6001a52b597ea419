"""The realism of a checkpoint (``evaluate --realism``, the model page's table): statmorph figures
(:mod:`galaxy_vae.realism`) of its reconstructions and samples against its own validation galaxies.

    validation split (the checkpoint's) --n galaxies, seeded--> real (n, 64, 64, 3) uint8
        --reconstruct (both codes)--> reconstructions
        --map posterior z ~ q(z|x) of half A, details d ~ p(d|z)--> samples

*Samples* are what the generator shows: a map point where a real galaxy lies (drawn from that
galaxy's map posterior, so it is never the galaxy's exact code) decoded with details drawn from
the learned prior p(detail | map point) -- nothing of the galaxy's own details. For a model
without a detail code this is the decoded map point. Samples are drawn for the galaxies of real
half A, so there are as many as half A holds and each sample carries its galaxy's class: the
report adds per-class sample figures and the axis ratio of samples at edge-on map points.

Also here: :func:`principal_axes`, a galaxy's orientation and axis ratio from the second moments
of its central segment (cheap, no statmorph), for orientation checks of reconstructions.
"""

from __future__ import annotations

import numpy as np
import torch

from galaxy_vae import realism
from galaxy_vae.checkpoints import Checkpoint
from galaxy_vae.data import CROP, model_view
from galaxy_vae.embed import encode_dist_images, has_detail, reconstruct, to_uint8, upsample
from galaxy_vae.quality import validation_split

DEFAULT_N = 300  # validation galaxies measured (the yardstick: ~300)
SAMPLER = ("map point from the posterior of each real galaxy of half A; details from the learned prior "
           "p(detail | map point) (models without a detail code: the decoded map point)")


def choose_rows(n_total: int, n: int, seed: int) -> np.ndarray:
    """``n`` rows of ``n_total`` drawn at random with ``seed``, in row order (all when n >= n_total)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


@torch.inference_mode()
def samples_at(model, images: np.ndarray, seed: int) -> np.ndarray:
    """One sample per cutout (see the module docstring): uint8 (N, 64, 64, 3)."""
    mu, logvar = encode_dist_images(model, images)
    rng = np.random.default_rng([seed, 2])
    z = torch.from_numpy((mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)).astype(np.float32))
    if has_detail(model):
        e = torch.from_numpy(rng.standard_normal((len(z), model.detail_dim)).astype(np.float32))
        out = model.decode_full(z, model.prior_detail(z, noise=e))
    else:
        out = model.decode(z)
    return to_uint8(upsample(out))


def checkpoint_images(ckpt: Checkpoint, data, n: int = DEFAULT_N, seed: int = 0) -> dict:
    """The three image sets of a checkpoint's realism report: real validation cutouts (64x64),
    their reconstructions, and samples at the map points of real half A; with labels and halves."""
    _, val = validation_split(ckpt, data)
    rows = choose_rows(len(val), n, seed)
    images, labels = val.images[rows], val.labels[rows]
    real = np.ascontiguousarray(model_view(images, CROP))
    recon = reconstruct(ckpt.model, images)[0]
    a, b = realism.halves(len(rows), labels, np.random.default_rng(seed))  # as realism.measure_all draws them
    return {"real": real, "reconstructions": recon, "samples": samples_at(ckpt.model, images[a], seed),
            "labels": labels, "half_a": a, "half_b": b, "class_names": list(val.class_names)}


def realism_of(ckpt: Checkpoint, data, n: int = DEFAULT_N, seed: int = 0, processes: int = 1) -> tuple[dict, dict]:
    """(report, measurements): :func:`realism.summarize` of the checkpoint's three sets plus
    ``sampler``, ``samples_per_class`` and ``edge_on_axis_ratio``; measurements for histograms."""
    sets = checkpoint_images(ckpt, data, n, seed)
    ms = realism.measure_all(sets["real"], sets["reconstructions"], sets["samples"], sets["labels"],
                             rng=seed, processes=processes)
    assert np.array_equal(ms["half_a"], sets["half_a"]), "realism.measure_all drew other halves"
    report = realism.summarize(ms, sets["class_names"])
    report["sampler"] = SAMPLER
    report["checkpoint"] = ckpt.path.name
    labels_a, labels_b = sets["labels"][sets["half_a"]], sets["labels"][sets["half_b"]]
    real_b = realism.subset(ms["real"], sets["half_b"])
    names = sets["class_names"]
    report["samples_per_class"] = {
        str(names[c]): realism.compare(realism.subset(ms["samples"], np.flatnonzero(labels_a == c)),
                                       realism.subset(real_b, np.flatnonzero(labels_b == c)))
        for c in np.unique(sets["labels"])}
    if "Edge-on" in names:
        c = names.index("Edge-on")
        sets_c = {"real": realism.subset(ms["real"], np.flatnonzero(sets["labels"] == c)),
                  "reconstructions": realism.subset(ms["reconstructions"], np.flatnonzero(labels_a == c)),
                  "samples": realism.subset(ms["samples"], np.flatnonzero(labels_a == c))}
        report["edge_on_axis_ratio"] = {
            f"{k}_median": (float(np.median(m["axis_ratio"][realism.usable(m)])) if realism.usable(m).any() else None)
            for k, m in sets_c.items()}
        report["edge_on_axis_ratio"]["n"] = int(len(sets_c["real"]["flag"]))
    return report, ms


# --- orientation ---------------------------------------------------------------------------------

def principal_axes(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(angle in radians in [0, pi), axis ratio b/a) of each cutout's central galaxy, (N,) each:
    second moments of its sky-subtracted luminance inside its segment (realism.segment). NaN where
    no central segment is found."""
    lum = realism.luminance(images)
    angles, ratios = np.full(len(lum), np.nan), np.full(len(lum), np.nan)
    for i, im in enumerate(lum):
        median, sigma = realism._sky(im)
        image = im - median
        segmap, label = realism.segment(image, sigma)
        if not label:
            continue
        w = np.where(segmap == label, np.clip(image, 0, None), 0.0)
        total = w.sum()
        if total <= 0:
            continue
        y, x = np.mgrid[:im.shape[0], :im.shape[1]]
        cx, cy = (w * x).sum() / total, (w * y).sum() / total
        cxx, cyy = (w * (x - cx) ** 2).sum() / total, (w * (y - cy) ** 2).sum() / total
        cxy = (w * (x - cx) * (y - cy)).sum() / total
        evals = np.linalg.eigvalsh(np.array([[cxx, cxy], [cxy, cyy]]))
        angles[i] = (0.5 * np.arctan2(2 * cxy, cxx - cyy)) % np.pi
        ratios[i] = np.sqrt(max(evals[0], 0.0) / evals[1]) if evals[1] > 0 else np.nan
    return angles, ratios


def angle_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest difference between axis angles (radians, modulo pi), in [0, pi/2]."""
    d = np.abs(np.asarray(a) - np.asarray(b)) % np.pi
    return np.minimum(d, np.pi - d)
