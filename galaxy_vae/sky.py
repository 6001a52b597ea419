"""The sky behind a galaxy: measured on a cutout's border, and matched to the catalogue's.

An upload's sky is rarely the catalogue's: another survey, another stretch, a brighter moon. Each
channel's sky is the median of a ring of ``extent.BORDER`` (6 %) of the side along the cutout's
edge; matching moves it to the catalogue's typical sky (the median over galaxies of theirs) by one
offset per channel. ``evaluate --robustness`` measured it on the similarity encoder's
framing-variant queries: it raises every variant's precision (checkpoints/README.md).
"""

from __future__ import annotations

import numpy as np

from galaxy_vae.extent import BORDER

# Median border sky (R, G, B) over all 6,664 galaxies of the offline sample (data/gz1_sample.h5):
# `catalogue_sky(images)`. A test re-measures it. Callers with another dataset pass their own.
CATALOGUE_SKY = (5.0, 5.0, 3.0)


def _ring_width(side: int) -> int:
    return max(1, round(BORDER * side))


def border_sky(images: np.ndarray) -> np.ndarray:
    """Per-channel median of each cutout's border ring: (N, H, W, 3) or (H, W, 3) -> (N, 3) or (3,)."""
    x = np.asarray(images)
    one = x.ndim == 3
    x = x[None] if one else x
    n, h, w, c = x.shape
    b = _ring_width(min(h, w))
    ring = np.concatenate([x[:, :b].reshape(n, -1, c), x[:, h - b:].reshape(n, -1, c),
                           x[:, b:h - b, :b].reshape(n, -1, c), x[:, b:h - b, w - b:].reshape(n, -1, c)], axis=1)
    sky = np.median(ring, axis=1)
    return sky[0] if one else sky


def catalogue_sky(images: np.ndarray, max_images: int | None = 2000) -> np.ndarray:
    """The catalogue's typical sky (3,): median over (evenly spaced) galaxies of their border sky."""
    images = np.asarray(images)
    if max_images and len(images) > max_images:
        images = images[np.linspace(0, len(images) - 1, max_images).astype(np.int64)]
    return np.median(border_sky(images), axis=0)


def match_sky(cutout: np.ndarray, level=CATALOGUE_SKY) -> np.ndarray:
    """``cutout`` (H, W, 3) uint8 with each channel shifted so its border sky equals ``level``."""
    shift = np.asarray(level, dtype=np.float64) - border_sky(cutout)
    return np.clip(np.rint(cutout + shift), 0, 255).astype(np.uint8)
