"""Galaxy datasets: the only module that reads or writes HDF5.

On disk everything uses astroNN's Galaxy10 layout: ``images`` (uint8, N x H x W x 3) and ``ans``
(integer labels). Files written by galaxy_vae add an ``ids`` dataset and the attributes
``class_names`` and ``source``; files from astroNN load unchanged, their class names known from
the image size (69 px: Galaxy10 SDSS, 256 px: Galaxy10 DECaLS).

In memory a :class:`GalaxyData` keeps images as uint8 at the stored size (69 x 69); models take
centre crops (:func:`model_view`), converted to float one batch at a time by the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from galaxy_vae.errors import DataError
from galaxy_vae.images import RESAMPLE, STORED_SIZE
from galaxy_vae.paths import atomic_path

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


def _problem(path: Path, expected: str, found: str, fix: str = HOW_TO_GET_DATA) -> DataError:
    return DataError(f"{path} is not a usable galaxy dataset", expected=expected, found=found, fix=fix)


def _decode_strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def _known_class_names(path: Path, f: h5py.File, n_classes: int, size: int) -> tuple[str, ...]:
    if "class_names" in f.attrs:
        return tuple(_decode_strings(f.attrs["class_names"]))
    if n_classes <= 10 and size == 69:
        return GALAXY10_SDSS_CLASSES
    if n_classes <= 10 and size == 256:
        return GALAXY10_DECALS_CLASSES
    log.warning("%s has no class_names attribute; naming classes by number", path)
    return tuple(f"class {i}" for i in range(n_classes))


def _default_source(size: int) -> str:
    return {69: "Galaxy10 SDSS (astroNN)", 256: "Galaxy10 DECaLS (astroNN)"}.get(size, "HDF5 file")


def open_dataset(path: str | Path, *, size: int = STORED_SIZE) -> GalaxyData:
    """Read and validate a Galaxy10-layout HDF5 file; images other than ``size`` are resized.

    Raises :class:`DataError` naming the file, what was expected and found, and how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise _problem(path, "an HDF5 file in Galaxy10 layout", "no such file")
    try:
        with h5py.File(path, "r") as f:
            for key in ("images", "ans"):
                if key not in f:
                    raise _problem(path, "datasets 'images' and 'ans' (Galaxy10 layout)",
                                   f"datasets {sorted(f.keys())}, no '{key}'")
            images_ds, labels_ds = f["images"], f["ans"]
            if images_ds.dtype != np.uint8 or images_ds.ndim != 4 or images_ds.shape[-1] != 3:
                raise _problem(path, "'images' of uint8 with shape (N, H, W, 3)",
                               f"{images_ds.dtype} with shape {images_ds.shape}")
            if images_ds.shape[1] != images_ds.shape[2]:
                raise _problem(path, "square images", f"{images_ds.shape[1]}x{images_ds.shape[2]}")
            if labels_ds.ndim != 1 or labels_ds.dtype.kind not in "iuf":
                raise _problem(path, "'ans' a 1-D array of integer labels",
                               f"{labels_ds.dtype} with shape {labels_ds.shape}")
            n = images_ds.shape[0]
            if labels_ds.shape[0] != n:
                raise _problem(path, "one label per image",
                               f"{n} images but {labels_ds.shape[0]} labels")
            labels_raw = labels_ds[...]
            if labels_raw.dtype.kind == "f" and not np.all(labels_raw == np.round(labels_raw)):
                raise _problem(path, "integer labels in 'ans'", "fractional label values")
            labels = labels_raw.astype(np.int64)
            if n and labels.min() < 0:
                raise _problem(path, "labels >= 0", f"label {labels.min()}")
            n_classes = int(labels.max()) + 1 if n else 0
            class_names = _known_class_names(path, f, n_classes, images_ds.shape[1])
            if n_classes > len(class_names):
                raise _problem(path, f"labels below {len(class_names)} (one per class name)",
                               f"label {n_classes - 1}")
            if "ids" in f:
                if f["ids"].shape != (n,):
                    raise _problem(path, f"'ids' with shape ({n},)", f"shape {f['ids'].shape}")
                ids = np.asarray(_decode_strings(f["ids"][...]), dtype=str)
            else:
                ids = np.asarray([str(i) for i in range(n)], dtype=str)
            source = f.attrs.get("source", _default_source(images_ds.shape[1]))
            source = source.decode() if isinstance(source, bytes) else str(source)
            images = _read_images(images_ds, size)
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as exc:  # h5py raises these for truncated or foreign files
        raise _problem(path, "a complete HDF5 file in Galaxy10 layout",
                       f"a file that cannot be read as HDF5 ({exc})") from exc
    return GalaxyData(images=images, labels=labels, class_names=class_names, ids=ids,
                      source=source, path=path)


def _read_images(images_ds: h5py.Dataset, size: int, chunk: int = 1024) -> np.ndarray:
    """Images at ``size`` x ``size``: read whole when already there, else resized chunk by chunk."""
    if images_ds.shape[1] == size:
        return images_ds[...]
    log.info("resizing %d images from %d to %d px", images_ds.shape[0], images_ds.shape[1], size)
    out = np.empty((images_ds.shape[0], size, size, 3), dtype=np.uint8)
    for start in range(0, images_ds.shape[0], chunk):
        block = images_ds[start:start + chunk]
        out[start:start + len(block)] = resize_images(block, size)
    return out


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8 by area averaging, one image at a time."""
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), RESAMPLE)) for im in images])


def write_dataset(path: str | Path, images: np.ndarray, labels: np.ndarray, ids: Sequence[str],
                  class_names: Sequence[str], source: str) -> Path:
    """Write a Galaxy10-layout file atomically: a temporary file beside ``path``, then a rename."""
    path = Path(path)
    images = np.asarray(images)
    labels = np.asarray(labels)
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3, images.shape
    assert len(images) == len(labels) == len(ids)
    # h5py creates the temporary file ("w-"), so it gets the usual umask permissions
    with atomic_path(path) as tmp, h5py.File(tmp, "w-") as f:
        f.create_dataset("images", data=images, chunks=(min(256, max(len(images), 1)),) + images.shape[1:])
        f.create_dataset("ans", data=labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.int64))
        f.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())
        f.attrs["class_names"] = np.asarray(class_names, dtype=object)
        f.attrs["source"] = source
    return path


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


def open_for_search(path: str | Path, challenge: bool = True) -> GalaxyData:
    """A dataset as the app and the CLI search it: Galaxy10 SDSS reduced to the challenge's six
    face-on classes unless ``challenge`` is False; any other dataset as it is."""
    data = open_dataset(path)
    return challenge_subset(data) if challenge and data.class_names == GALAXY10_SDSS_CLASSES else data


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


def describe(data: GalaxyData) -> dict:
    """Summary used by ``info``: n, image_shape, classes, counts, source."""
    return {
        "n": len(data),
        "image_shape": list(data.images.shape[1:]),
        "classes": list(data.class_names),
        "counts": data.counts(),
        "source": data.source,
    }
