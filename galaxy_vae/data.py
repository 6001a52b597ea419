"""Galaxy datasets in memory: :class:`GalaxyData`, class subsets (the challenge preset), what a
model sees of a cutout (:func:`model_view`: the central 64x64, the one definition) and stratified
splits. Files are read and written by :mod:`galaxy_vae.hdf5`.

A :class:`GalaxyData` keeps images as uint8 at the stored size (69 x 69); models take centre crops,
converted to float one batch at a time by the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from galaxy_vae.errors import DataError

log = logging.getLogger(__name__)

GALAXY10_SDSS_CLASSES = (
    "Disk, Face-on, No Spiral",
    "Smooth, Completely round",
    "Smooth, in-between round",
    "Smooth, Cigar shaped",
    "Disk, Edge-on, Rounded Bulge",
    "Disk, Edge-on, Boxy Bulge",
    "Disk, Edge-on, No Bulge",
    "Disk, Face-on, Tight Spiral",
    "Disk, Face-on, Medium Spiral",
    "Disk, Face-on, Loose Spiral",
)
GALAXY10_DECALS_CLASSES = (
    "Disturbed",
    "Merging",
    "Round Smooth",
    "In-between Round Smooth",
    "Cigar Shaped Smooth",
    "Barred Spiral",
    "Unbarred Tight Spiral",
    "Unbarred Loose Spiral",
    "Edge-on without Bulge",
    "Edge-on with Bulge",
)
GZ1_SAMPLE_CLASSES = ("Elliptical", "Spiral CW", "Spiral ACW", "Edge-on", "Don't know", "Merger")
# The Milky Way challenge: Galaxy10 SDSS without cigar-shaped and edge-on galaxies (3, 4, 5, 6),
# leaving the face-on morphologies one would compare a face-on Milky Way with.
CHALLENGE_KEEP = (0, 1, 2, 7, 8, 9)

HOW_TO_GET_DATA = (
    "Build the offline sample with `make sample`, fetch Galaxy10 with "
    "`python -m galaxy_vae fetch galaxy10`, or import a folder of cutouts with "
    "`python -m galaxy_vae import DIR --labels CSV --out FILE.h5`."
)


@dataclass(frozen=True, eq=False)
class GalaxyData:
    """Galaxy cutouts with labels. Arrays are never copied by accident: subsets index them."""

    images: np.ndarray  # (N, S, S, 3) uint8 at the stored size
    labels: np.ndarray  # (N,) int64 in [0, len(class_names))
    class_names: tuple[str, ...]
    ids: np.ndarray  # (N,) str: SDSS objID, file stem, or row number for files without ids
    source: str = ""
    path: Path | None = None
    original_labels: np.ndarray | None = None  # labels in the file, before any class subset
    original_class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def name(self) -> str:
        return self.path.name if self.path else self.source or "dataset"

    def counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        per = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, per)}

    def take(self, index: np.ndarray | Sequence[int]) -> GalaxyData:
        """The galaxies at ``index`` (labels and names unchanged)."""
        index = np.asarray(index)
        orig = None if self.original_labels is None else self.original_labels[index]
        return replace(self, images=self.images[index], labels=self.labels[index],
                       ids=self.ids[index], original_labels=orig)


def select_classes(data: GalaxyData, keep: Sequence[int]) -> GalaxyData:
    """Only the galaxies of classes ``keep``, relabelled 0..len(keep)-1 in the order given.

    The original labels and names are kept (``original_labels``, ``original_class_names``), so
    ``original_class_names[original_labels[i]] == class_names[labels[i]]`` for every galaxy.
    """
    keep = [int(k) for k in keep]
    n_classes = len(data.class_names)
    bad = [k for k in keep if not 0 <= k < n_classes]
    if bad or len(set(keep)) != len(keep) or not keep:
        raise DataError("Cannot select classes", expected=f"distinct class numbers in 0..{n_classes - 1}",
                        found=f"{keep}", fix="Pick from: " + ", ".join(
                            f"{i} {name}" for i, name in enumerate(data.class_names)))
    base_labels = data.labels if data.original_labels is None else data.original_labels
    base_names = data.class_names if data.original_class_names is None else data.original_class_names
    mapping = np.full(n_classes, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    rows = np.flatnonzero(mapping[data.labels] >= 0)
    return GalaxyData(images=data.images[rows], labels=mapping[data.labels[rows]],
                      class_names=tuple(data.class_names[k] for k in keep), ids=data.ids[rows],
                      source=data.source, path=data.path, original_labels=base_labels[rows],
                      original_class_names=base_names)


def challenge_subset(data: GalaxyData, keep: Sequence[int] = CHALLENGE_KEEP) -> GalaxyData:
    """The Milky Way challenge's 6-class subset of Galaxy10 SDSS (face-on classes by default)."""
    if data.class_names != GALAXY10_SDSS_CLASSES:
        raise DataError(f"{data.name} has no challenge preset", expected="Galaxy10 SDSS's 10 classes",
                        found=f"{len(data.class_names)} classes ({', '.join(data.class_names)})",
                        fix="Use select_classes with the class numbers you want.")
    return select_classes(data, keep)


CROP = 64  # what every model sees: the central 64x64 of the stored 69x69 cutout (the seed's crop)


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Central ``size`` x ``size`` of (..., H, W, 3) images, a view (no copy). The seed: 69 -> 64."""
    h, w = images.shape[-3], images.shape[-2]
    if size > min(h, w):
        raise DataError("Cannot crop images", expected=f"images at least {size}x{size}",
                        found=f"{h}x{w}", fix="Use a dataset with larger cutouts or a smaller model input.")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size, :]


def model_view(images: np.ndarray, crop: int = CROP, size: int | None = None) -> np.ndarray:
    """What a model sees: the central ``crop`` pixels, block-averaged down to ``size`` if smaller.

    uint8 in, uint8 out, (..., size, size, 3). The seed ConvVAE reads 32x32: crop 64, average 2x2.
    """
    out = center_crop(images, crop)
    size = size or crop
    if size == crop:
        return out
    if crop % size:
        raise DataError("Cannot downscale images", expected=f"a size dividing {crop}", found=str(size),
                        fix="Choose a model input size that divides the crop (e.g. 64 -> 32).")
    f = crop // size
    blocks = out.reshape(out.shape[:-3] + (size, f, size, f, 3)).astype(np.float32)
    return np.round(blocks.mean(axis=(-4, -2))).astype(np.uint8)


def stratified_split(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified (train, validation) row indices, identical across runs and machines.

    Each class contributes round(val_fraction * n_c) galaxies to validation (at least one when
    the class has two or more). numpy's PCG64 stream is platform-independent for a given seed.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError("Cannot split", expected="a validation fraction between 0 and 1",
                        found=str(val_fraction), fix="Use e.g. 0.2.")
    labels = np.asarray(labels)
    rng = np.random.Generator(np.random.PCG64(seed))
    val = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        n_val = 0
        if len(rows) > 1:  # keep at least one galaxy of the class on each side
            n_val = min(max(int(round(val_fraction * len(rows))), 1), len(rows) - 1)
        val.append(rng.permutation(rows)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx.astype(np.int64), val_idx.astype(np.int64)
