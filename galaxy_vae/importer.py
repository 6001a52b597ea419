"""Import a folder of galaxy cutouts plus an ``id,label`` CSV into a Galaxy10-layout HDF5 file.

Each picture gets the Galaxy10 recipe (:func:`galaxy_vae.cutouts.galaxy10_cutout`). Ids come
from file names (``588848901537202306.jpeg`` -> ``588848901537202306``). Files that cannot be
decoded, or that have no label, are reported by name and skipped; the output is written to a
temporary file and renamed into place, so a failure never leaves a half-written dataset.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from galaxy_vae.cutouts import galaxy10_cutout, square_cutout
from galaxy_vae.errors import DataError, GalaxyVAEError
from galaxy_vae.hdf5 import write_dataset
from galaxy_vae.images import STORED_SIZE, decode_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"}


@dataclass
class ImportReport:
    """What an import wrote and what it had to leave out, by file name."""

    out: Path
    written: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    unlabelled: list[str] = field(default_factory=list)  # files with no row in the CSV
    missing: list[str] = field(default_factory=list)  # CSV ids with no file


def read_labels(csv_path: str | Path) -> dict[str, int]:
    """``id -> label`` from a two-column CSV; a header row (e.g. ``id,label``) is skipped."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"Cannot read labels {csv_path}", expected="a CSV file of id,label rows",
                        found="no such file", fix="Pass the labels file with --labels.")
    labels: dict[str, int] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise DataError(f"Cannot read labels {csv_path}", expected="two columns: id,label",
                                found=f"line {lineno}: {row!r}", fix="Write one 'id,label' row per image.")
            key, value = row[0].strip(), row[1].strip()
            try:
                labels[key] = int(value)
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise DataError(f"Cannot read labels {csv_path}", expected="an integer label",
                                found=f"line {lineno}: {value!r}",
                                fix="Labels are class numbers 0, 1, 2, ...") from None
    if not labels:
        raise DataError(f"Cannot read labels {csv_path}", expected="at least one id,label row",
                        found="no rows", fix="Check the file is the label CSV.")
    return labels


def cutout_file(path: str | Path, galaxy_zoo_frame: bool = True) -> tuple[np.ndarray | None, str]:
    """One picture file cut out as the import does (the Galaxy10 crop, or only resized with
    ``galaxy_zoo_frame`` off): (uint8 (69, 69, 3), "") or (None, why it could not be read)."""
    try:
        img = decode_image(path)
        return (galaxy10_cutout(img) if galaxy_zoo_frame else square_cutout(img, STORED_SIZE)), ""
    except GalaxyVAEError as exc:
        return None, str(exc)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for broken or foreign files
        return None, f"{type(exc).__name__}: {exc}"


def _cutout(args: tuple[str, bool]) -> tuple[str, np.ndarray | None, str]:
    """:func:`cutout_file` in a worker process: (name, cutout or None, error message)."""
    path, galaxy_zoo_frame = args
    return (path, *cutout_file(path, galaxy_zoo_frame))


@dataclass(frozen=True)
class Pictures:
    """The labelled pictures of a folder, in the order an import writes them (sorted paths)."""

    files: list[Path]  # labelled picture files; a file's position is its row in the dataset written
    labels: list[int]  # one per file
    class_names: tuple[str, ...]
    unlabelled: list[str]  # picture files with no row in the CSV
    missing: list[str]  # CSV ids with no file


def find_pictures(folder: str | Path, labels_csv: str | Path,
                  class_names: Sequence[str] | None = None) -> Pictures:
    """The pictures of ``folder`` that ``labels_csv`` labels, checked before any is decoded: what
    :func:`import_folder` imports (and ``embed --engine ray`` reads in shards)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Cannot import {folder}", expected="a folder of galaxy pictures",
                        found="no such folder", fix="Pass the folder that holds the image files.")
    labels = read_labels(labels_csv)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    labelled = [p for p in files if p.stem in labels]
    if not labelled:
        raise DataError(f"Cannot import {folder}", expected="picture files named by the ids in the CSV",
                        found=f"{len(files)} pictures, none with a label",
                        fix="Name each file <id>.<ext> with <id> as in the labels CSV.")
    n_classes = max(labels[p.stem] for p in labelled) + 1
    if min(labels[p.stem] for p in labelled) < 0:
        raise DataError(f"Cannot import {folder}", expected="labels >= 0", found="a negative label",
                        fix="Labels are class numbers 0, 1, 2, ...")
    class_names = tuple(class_names) if class_names else tuple(f"class {i}" for i in range(n_classes))
    if len(class_names) < n_classes:
        raise DataError(f"Cannot import {folder}", expected=f"{n_classes} class names (labels 0..{n_classes - 1})",
                        found=f"{len(class_names)}: {', '.join(class_names)}",
                        fix="Pass one --class-names entry per label.")
    return Pictures(labelled, [labels[p.stem] for p in labelled], class_names,
                    unlabelled=[p.name for p in files if p.stem not in labels],
                    missing=sorted(set(labels) - {p.stem for p in files}))


def import_folder(folder: str | Path, labels_csv: str | Path, out: str | Path,
                  class_names: Sequence[str] | None = None, *, galaxy_zoo_frame: bool = True,
                  source: str | None = None, workers: int | None = None,
                  progress: bool = True) -> ImportReport:
    """Build a dataset from ``folder`` (see module docstring). Returns what was written and skipped.

    ``galaxy_zoo_frame`` applies the Galaxy10 crop (central 207/424); switch it off for cutouts
    that are already framed like Galaxy10, which are then only resized to 69x69.
    """
    folder, out = Path(folder), Path(out)
    found = find_pictures(folder, labels_csv, class_names)
    report = ImportReport(out=out, unlabelled=found.unlabelled, missing=found.missing)
    labels = {p.stem: label for p, label in zip(found.files, found.labels)}

    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(str(p), galaxy_zoo_frame) for p in found.files]
    cutouts, ids, out_labels = [], [], []
    bar = tqdm(total=len(jobs), desc=f"importing {folder.name}", unit="img", disable=not progress)
    with ProcessPoolExecutor(max_workers=workers) if workers > 1 else _Serial() as pool:
        for path, arr, error in pool.map(_cutout, jobs, chunksize=64):
            bar.update()
            name = Path(path).name
            if arr is None:
                report.unreadable.append((name, error))
                log.warning("skipping %s: %s", name, error)
                continue
            cutouts.append(arr)
            ids.append(Path(path).stem)
            out_labels.append(labels[Path(path).stem])
    bar.close()
    if not cutouts:
        raise DataError(f"Cannot import {folder}", expected="at least one readable picture",
                        found=f"{len(report.unreadable)} unreadable files", fix="Check the files are images.")
    write_dataset(out, np.stack(cutouts), np.asarray(out_labels, dtype=np.int64), ids, found.class_names,
                  source or default_source(folder))
    report.written = len(cutouts)
    return report


def default_source(folder: Path) -> str:
    """The credit an import stores when none is given."""
    return f"imported from {Path(folder).name}"


class _Serial:
    """Stand-in for a process pool when one worker is asked for (no fork, easy to debug)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, items, chunksize=1):
        return map(fn, items)
