"""Galaxy10-layout HDF5 files: the only module that reads or writes HDF5.

On disk everything uses astroNN's Galaxy10 layout: ``images`` (uint8, N x H x W x 3) and ``ans``
(integer labels). Files written by galaxy_vae add an ``ids`` dataset and the attributes
``class_names`` and ``source``; files from astroNN load unchanged, their class names known from
the image size (69 px: Galaxy10 SDSS, 256 px: Galaxy10 DECaLS).

A file is checked before anything large is read (:func:`inspect_dataset`): its layout, that it
holds at least one galaxy of at least 64 px, and that the bytes its datasets claim are really in
the file (a truncated copy, or a sparse file whose header claims 143 GB, is refused from its
header, not by reading gigabytes of zeros) and fit in memory. Every refusal names the file, what
was expected, what was found, and the fix for that problem.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from galaxy_vae.data import (
    CHALLENGE_KEEP,
    CROP,
    GALAXY10_DECALS_CLASSES,
    GALAXY10_SDSS_CLASSES,
    HOW_TO_GET_DATA,
    GalaxyData,
    challenge_subset,
)
from galaxy_vae.errors import DataError
from galaxy_vae.images import RESAMPLE, STORED_SIZE
from galaxy_vae.paths import atomic_path

log = logging.getLogger(__name__)

REBUILD = "Copy or download the file again, or rebuild it (`make sample`, `python -m galaxy_vae fetch`, `import`)."
# what h5py raises on damaged files: OSError for most, RuntimeError when HDF5 meets impossible
# offsets, KeyError/ValueError/TypeError for mangled objects and attributes (found by fuzzing)
H5PY_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)
MEMORY_SHARE = 0.8  # a dataset may take at most this share of the memory available when it is opened


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


def _not_hdf5(path: Path) -> DataError:
    """What a file that h5py cannot open is, from its bytes: empty, all zeros, or something else."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if size == 0:
        return _problem(path, "an HDF5 file in Galaxy10 layout", "an empty file (0 bytes)", REBUILD)
    if not head.strip(b"\0"):
        return _problem(path, "an HDF5 file in Galaxy10 layout",
                        f"{size:,} bytes starting with {len(head):,} zero bytes (a copy or download that never "
                        "finished)", REBUILD)
    return _problem(path, "an HDF5 file in Galaxy10 layout",
                    f"another kind of file (it starts with bytes {head[:8].hex(' ')})",
                    "Point the app at a .h5 dataset; " + HOW_TO_GET_DATA[0].lower() + HOW_TO_GET_DATA[1:])


def _damaged(path: Path, exc: Exception) -> DataError:
    return _problem(path, "a complete HDF5 file in Galaxy10 layout", f"a damaged HDF5 file ({exc})", REBUILD)


def _bytes_on_disk(path: Path) -> int:
    """Bytes the file really holds: its length, or less when it is sparse (holes hold nothing)."""
    st = path.stat()
    return min(st.st_size, getattr(st, "st_blocks", st.st_size // 512 + 1) * 512)


def _memory_available() -> int | None:
    """Bytes of memory available now (Linux /proc/meminfo), None where that cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def _check_stored(path: Path, ds: h5py.Dataset, name: str, on_disk: int) -> None:
    """The bytes dataset ``name`` claims must be in the file: all of them when uncompressed."""
    stored, claimed = ds.id.get_storage_size(), ds.size * ds.dtype.itemsize
    if claimed and (stored > on_disk or (ds.compression is None and stored < claimed)):
        raise _problem(path, f"the {claimed / 1e6:,.1f} MB of '{name}' its header declares",
                       f"{min(stored, on_disk) / 1e6:,.1f} MB of them in a file holding {on_disk / 1e6:,.1f} MB "
                       "(truncated, sparse, or never fully written)", REBUILD)


@dataclass(frozen=True)
class DatasetFile:
    """What a dataset file holds, read from its header and labels (never its images)."""

    path: Path
    n: int
    image_shape: tuple[int, int, int]  # as stored in the file (H, W, 3)
    labels: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]
    source: str


def _inspect(f: h5py.File, path: Path, size: int) -> DatasetFile:
    for key in ("images", "ans"):
        if key not in f:
            raise _problem(path, "datasets 'images' and 'ans' (Galaxy10 layout)",
                           f"datasets {sorted(f.keys())}, no '{key}'")
    images_ds, labels_ds = f["images"], f["ans"]
    if images_ds.dtype != np.uint8 or images_ds.ndim != 4 or images_ds.shape[-1] != 3:
        raise _problem(path, "'images' of uint8 with shape (N, H, W, 3)",
                       f"{images_ds.dtype} with shape {images_ds.shape}")
    n, side = images_ds.shape[0], images_ds.shape[1]
    if side != images_ds.shape[2]:
        raise _problem(path, "square images", f"{side}x{images_ds.shape[2]}")
    if n == 0:
        raise _problem(path, "at least one galaxy", "0 images", "The file was written empty: build it again from "
                       "its pictures with `python -m galaxy_vae import`.")
    if side < CROP:
        raise _problem(path, f"cutouts of at least {CROP}x{CROP} pixels (models see the central {CROP}x{CROP})",
                       f"{side}x{side} images, which would have to be blown up",
                       "Import the original pictures with `python -m galaxy_vae import DIR --labels CSV "
                       f"--out FILE.h5`, which cuts {STORED_SIZE}x{STORED_SIZE} cutouts.")
    if labels_ds.ndim != 1 or labels_ds.dtype.kind not in "iuf":
        raise _problem(path, "'ans' a 1-D array of integer labels", f"{labels_ds.dtype} with shape {labels_ds.shape}")
    if labels_ds.shape[0] != n:
        raise _problem(path, "one label per image", f"{n} images but {labels_ds.shape[0]} labels")
    on_disk = _bytes_on_disk(path)
    for name in ("images", "ans", "ids"):
        if name in f:
            _check_stored(path, f[name], name, on_disk)
    needed, available = n * (size * size * 3 + 64), _memory_available()  # the images at 69 px, labels, ids
    if available is not None and needed > MEMORY_SHARE * available:
        raise _problem(path, f"a dataset that fits in memory ({available / 1e9:.1f} GB available)",
                       f"{n:,} galaxies needing {needed / 1e9:.1f} GB", "Use a subset of the file, or a machine "
                       "with more memory.")
    labels_raw = labels_ds[...]
    if labels_raw.dtype.kind == "f" and not np.all(labels_raw == np.round(labels_raw)):
        raise _problem(path, "integer labels in 'ans'", "fractional label values")
    labels = labels_raw.astype(np.int64)
    if labels.min() < 0:
        raise _problem(path, "labels >= 0", f"label {labels.min()}")
    class_names = _known_class_names(path, f, int(labels.max()) + 1, side)
    if labels.max() >= len(class_names):
        raise _problem(path, f"labels below {len(class_names)} (one per class name)", f"label {labels.max()}",
                       "Label the file again, or give it one class name per label (`import --class-names`).")
    source = f.attrs.get("source", _default_source(side))
    source = source.decode() if isinstance(source, bytes) else str(source)
    return DatasetFile(path, n, tuple(images_ds.shape[1:]), labels, class_names, source)


def _opened(path: Path):
    """h5py.File of ``path``, or the DataError saying what the file is instead."""
    if not path.is_file():
        raise _problem(path, "an HDF5 file in Galaxy10 layout", "a folder" if path.is_dir() else "no such file")
    if not h5py.is_hdf5(path):
        raise _not_hdf5(path)
    return h5py.File(path, "r")


def inspect_dataset(path: str | Path, *, size: int = STORED_SIZE) -> DatasetFile:
    """Check a dataset file and describe it from its header and labels, without reading images."""
    path = Path(path)
    try:
        with _opened(path) as f:
            return _inspect(f, path, size)
    except H5PY_ERRORS as exc:
        raise _damaged(path, exc) from exc


def open_dataset(path: str | Path, *, size: int = STORED_SIZE, mapped: bool = False) -> GalaxyData:
    """Read and validate a Galaxy10-layout HDF5 file; images other than ``size`` are resized.

    ``mapped``: the images as a read-only memory map of an uncompressed copy kept beside the file
    (:func:`store.mapped_copy`, written once), so that a large catalogue costs memory only for the
    galaxies actually looked at; in memory as before when that folder cannot be written.

    Raises :class:`DataError` naming the file, what was expected and found, and how to fix it.
    """
    path = Path(path)
    try:
        with _opened(path) as f:
            info = _inspect(f, path, size)
            if "ids" in f:
                if f["ids"].shape != (info.n,):
                    raise _problem(path, f"'ids' with shape ({info.n},)", f"shape {f['ids'].shape}", REBUILD)
                ids = np.asarray(_decode_strings(f["ids"][...]), dtype=str)
            else:
                ids = np.asarray([str(i) for i in range(info.n)], dtype=str)
            images = _mapped_images(path, f["images"], size) if mapped else None
            if images is None:
                images = _read_images(f["images"], size)
    except H5PY_ERRORS as exc:
        raise _damaged(path, exc) from exc
    return GalaxyData(images=images, labels=info.labels, class_names=info.class_names, ids=ids,
                      source=info.source, path=path)


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


def _mapped_images(path: Path, images_ds: h5py.Dataset, size: int, chunk: int = 1024) -> np.ndarray | None:
    from galaxy_vae.store import mapped_copy, release

    def fill(out: np.ndarray) -> None:
        for start in range(0, images_ds.shape[0], chunk):
            block = images_ds[start:start + chunk]
            out[start:start + len(block)] = block if block.shape[1] == size else resize_images(block, size)
            release(out, start, start + len(block))  # written pages leave this process (kept by the OS)

    return mapped_copy(path, f"images_{size}", (images_ds.shape[0], size, size, 3), fill)


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


def search_rows(path: str | Path, challenge: bool = True) -> np.ndarray:
    """The rows of the file :func:`open_for_search` keeps, in order (N,) int64: the challenge's
    face-on classes of Galaxy10 SDSS, else every row. Read from the labels only."""
    info = inspect_dataset(path)
    if challenge and info.class_names == GALAXY10_SDSS_CLASSES:
        return np.flatnonzero(np.isin(info.labels, CHALLENGE_KEEP)).astype(np.int64)
    return np.arange(info.n, dtype=np.int64)


def read_rows(path: str | Path, rows: np.ndarray, size: int = STORED_SIZE) -> np.ndarray:
    """Images of the file's ``rows`` (sorted, e.g. one shard of :func:`search_rows`) at ``size``:
    uint8 (len(rows), size, size, 3), resized as :func:`open_dataset` resizes. The span from the
    first to the last row is read in one go, so a shard costs one contiguous read."""
    path, rows = Path(path), np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.empty((0, size, size, 3), dtype=np.uint8)
    try:
        with _opened(path) as f:
            block = f["images"][int(rows[0]):int(rows[-1]) + 1][rows - rows[0]]
    except H5PY_ERRORS as exc:
        raise _damaged(path, exc) from exc
    return block if block.shape[1] == size else resize_images(block, size)


def open_for_search(path: str | Path, challenge: bool = True, mapped: bool = False) -> GalaxyData:
    """A dataset as the app and the CLI search it: Galaxy10 SDSS reduced to the challenge's six
    face-on classes unless ``challenge`` is False; any other dataset as it is. ``mapped``: images
    memory-mapped (:func:`open_dataset`), the challenge subset in a mapped copy of its own."""
    data = open_dataset(path, mapped=mapped)
    if not (challenge and data.class_names == GALAXY10_SDSS_CLASSES):
        return data
    if not mapped or not isinstance(data.images, np.memmap):
        return challenge_subset(data)
    from galaxy_vae.store import mapped_copy, release

    keep = search_rows(path)  # the rows select_classes keeps, in order

    def fill(out: np.ndarray, chunk: int = 1024) -> None:
        for start in range(0, len(keep), chunk):
            out[start:start + chunk] = data.images[keep[start:start + chunk]]
            release(out, start, start + chunk)
        release(data.images, 0, len(data.images))

    subset = mapped_copy(Path(path), f"images_{data.images.shape[1]}_challenge", (len(keep),) + data.images.shape[1:],
                         fill)
    # select_classes on a stand-in without pixels, then the mapped subset's pixels put in
    light = challenge_subset(replace(data, images=np.empty((len(data), 0, 0, 3), dtype=np.uint8)))
    return replace(light, images=subset) if subset is not None else challenge_subset(data)


def describe(path: str | Path) -> dict:
    """Summary used by ``info`` (no image is read): n, image_shape as stored, classes, counts, source."""
    info = inspect_dataset(path)
    counts = np.bincount(info.labels, minlength=len(info.class_names))
    return {"n": info.n, "image_shape": list(info.image_shape), "classes": list(info.class_names),
            "counts": {name: int(c) for name, c in zip(info.class_names, counts)}, "source": info.source,
            "loaded_as": [STORED_SIZE, STORED_SIZE, 3]}
