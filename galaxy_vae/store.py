"""The persisted catalogue: everything derived from (checkpoint, dataset) -- latents or embeddings,
the map projection, reconstruction errors, the outlier thresholds, the vector index -- computed
once and kept beside the dataset, keyed by both files' contents.

    data/gz1_sample.h5
    data/.catalogue/gz1_sample/galaxy_vae-<rows>/manifest.json    what it was computed from
                                                 vectors.npy ...   one file per derived array

``<rows>`` names which galaxies of the file the catalogue holds (a class subset, a slice): their
ids, labels and class names, hashed. The manifest records, for the dataset and the checkpoint,
size, modification time and sha256; for every stored file its size and sha256.

Nothing stored is trusted before it is checked (:meth:`CatalogueStore.open`):

- a source file whose size and modification time are unchanged is taken as the same file (the
  cheap check, a ``stat``); one whose stamp moved is hashed, and only a different sha256 makes the
  store stale -- then everything in it is dropped and rebuilt;
- every array is read only if its file has the recorded size and sha256 and holds the recorded
  shape and dtype; a truncated, altered or missing file reads as absent, so it is recomputed and
  written again, never used and never a crash.

Writes go to a temporary file renamed into place (:func:`paths.atomic_path`), and the manifest is
read, updated and replaced under a file lock, so several processes (app servers, ``embed``) can
share a store. A folder that cannot be written (a read-only dataset folder) leaves the catalogue
in memory only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from galaxy_vae.paths import atomic_path

log = logging.getLogger(__name__)

FORMAT = "galaxy_vae-catalogue/1"  # bump when what is derived, or how, changes
FOLDER = ".catalogue"  # beside the dataset; ignored by git
HASH_CHUNK = 1 << 22  # bytes read per sha256 update


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 4 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: Path, known: dict | None = None) -> dict:
    """{"size", "mtime_ns", "sha256"} of ``path``. When ``known`` (an earlier fingerprint) has the
    same size and modification time, its sha256 is taken without reading the file."""
    st = path.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if known and all(known.get(k) == v for k, v in stamp.items()) and known.get("sha256"):
        return {**stamp, "sha256": known["sha256"]}
    return {**stamp, "sha256": file_sha256(path)}


def rows_key(ids, labels, class_names) -> str:
    """A short hash of which galaxies a catalogue holds: their ids, labels and class names, in order."""
    h = hashlib.sha256(FORMAT.encode())
    h.update("\x1f".join(map(str, class_names)).encode())
    h.update(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)).tobytes())
    h.update("\x1e".join(map(str, ids)).encode())
    return h.hexdigest()[:16]


class CatalogueStore:
    """One folder of derived arrays and values for (dataset file, rows, checkpoint file or none).

    Use :meth:`open` (checks the manifest against the files); then :meth:`array` / :meth:`save_array`
    and :meth:`value` / :meth:`save_value`. Every read is checked; every write is atomic.
    """

    def __init__(self, folder: Path, dataset: Path, checkpoint: Path | None, rows: str):
        self.folder, self.dataset, self.checkpoint, self.rows = Path(folder), Path(dataset), checkpoint, rows
        self._lock = threading.Lock()
        self.rebuilt = False  # whether open() found nothing valid and started afresh

    @classmethod
    def beside(cls, dataset: Path, checkpoint: Path | None, space: str, rows: str) -> CatalogueStore | None:
        """The store for these files beside ``dataset``, opened (checked); None when the folder
        cannot be written."""
        dataset = Path(dataset)
        folder = dataset.parent / FOLDER / dataset.stem / f"{space}-{rows}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(folder)
        except OSError as exc:
            log.warning("catalogue kept in memory only: cannot write %s (%s)", folder, exc)
            return None
        return cls(folder, dataset, checkpoint, rows).open()

    # --- the manifest ---------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    def _read_manifest(self) -> dict | None:
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None

    def _write_manifest(self, manifest: dict) -> None:
        with atomic_path(self.manifest_path) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads and other processes, one at a time, around a manifest update."""
        with self._lock, open(self.folder / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _sources(self, known: dict | None) -> dict:
        known = known or {}
        return {"dataset": fingerprint(self.dataset, known.get("dataset")),
                "checkpoint": fingerprint(self.checkpoint, known.get("checkpoint")) if self.checkpoint else None,
                "rows": self.rows}

    @staticmethod
    def _same_sources(a: dict, b: dict) -> bool:
        def sha(x):
            return None if x is None else x.get("sha256")
        return (a.get("rows") == b.get("rows") and sha(a.get("dataset")) == sha(b.get("dataset"))
                and sha(a.get("checkpoint")) == sha(b.get("checkpoint")))

    def open(self) -> CatalogueStore:
        """Check the manifest against the dataset and checkpoint as they are now: keep it when
        their contents are unchanged (stamps refreshed), else empty the folder and start afresh."""
        with self._locked():
            manifest = self._read_manifest()
            sources = self._sources(manifest.get("sources") if manifest else None)
            if manifest and self._same_sources(manifest.get("sources") or {}, sources):
                if manifest["sources"] != sources:  # same contents, new stamps: no hashing next time
                    manifest["sources"] = sources
                    self._write_manifest(manifest)
                return self
            if manifest is not None or any(p.name != ".lock" for p in self.folder.iterdir()):
                log.info("catalogue %s is stale or damaged: rebuilding it", self.folder)
            for p in self.folder.iterdir():
                if p.name != ".lock":
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            self._write_manifest({"format": FORMAT, "sources": sources, "arrays": {}, "values": {}})
            self.rebuilt = True
        return self

    def manifest(self) -> dict:
        return self._read_manifest() or {"format": FORMAT, "sources": {}, "arrays": {}, "values": {}}

    def _update(self, section: str, name: str, entry) -> None:
        with self._locked():
            manifest = self._read_manifest()
            if manifest is None or not self._same_sources(manifest.get("sources") or {}, self._sources(
                    manifest.get("sources"))):
                return  # another process found the files changed and rebuilt: this result is stale
            manifest.setdefault(section, {})[name] = entry
            self._write_manifest(manifest)

    # --- arrays and values ----------------------------------------------------------------------

    def path(self, name: str, suffix: str = ".npy") -> Path:
        return self.folder / f"{name}{suffix}"

    def array(self, name: str, mmap: bool = False) -> np.ndarray | None:
        """The stored array ``name`` when its file is exactly what was recorded, else None."""
        entry = self.manifest()["arrays"].get(name)
        path = self.path(name)
        if not entry or not self._intact(path, entry):
            return None
        try:
            out = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("ignoring damaged %s: %s", path, exc)
            return None
        if list(out.shape) != entry.get("shape") or str(out.dtype) != entry.get("dtype"):
            return None
        return out

    def save_array(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        path = self.path(name)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array, allow_pickle=False)
            entry = {"file": path.name, "size": tmp.stat().st_size, "sha256": file_sha256(tmp),
                     "shape": list(array.shape), "dtype": str(array.dtype)}
        self._update("arrays", name, entry)

    def file(self, name: str) -> Path | None:
        """A stored non-array file (the vector index) when intact, else None."""
        entry = self.manifest()["arrays"].get(name)
        path = self.folder / entry["file"] if entry and "file" in entry else None
        return path if path is not None and self._intact(path, entry) else None

    def save_file(self, name: str, suffix: str, write) -> None:
        """Store a file written by ``write(path)`` (e.g. a faiss index) under ``name``."""
        path = self.path(name, suffix)
        with atomic_path(path) as tmp:
            write(tmp)
            entry = {"file": path.name, "size": tmp.stat().st_size, "sha256": file_sha256(tmp)}
        self._update("arrays", name, entry)

    def value(self, name: str):
        return self.manifest()["values"].get(name)

    def save_value(self, name: str, value) -> None:
        self._update("values", name, value)

    @staticmethod
    def _intact(path: Path, entry: dict) -> bool:
        try:
            if path.stat().st_size != entry.get("size"):
                return False
        except OSError:
            return False
        return file_sha256(path) == entry.get("sha256")


# --- the images, memory-mapped --------------------------------------------------------------------

def mapped_copy(dataset: Path, name: str, shape: tuple[int, ...], fill) -> np.ndarray | None:
    """A read-only memory map of uint8 ``shape`` kept beside ``dataset`` as ``name``.npy: made once by
    ``fill(out)`` (``out`` a writable map to fill block by block, so the whole array never needs to be
    in memory), reused while the dataset's contents are unchanged (the same size/time, else sha256,
    check as the catalogue's). Pages are read from disk when touched and can be dropped again, so
    the process holds only what it looks at. None when the folder cannot be written."""
    dataset = Path(dataset)
    folder = dataset.parent / FOLDER / dataset.stem
    target, record = folder / f"{name}.npy", folder / f"{name}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        known = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        known = {}
    except_ok = (OSError, ValueError, EOFError)
    try:
        source = fingerprint(dataset, known.get("dataset"))
        if (known.get("format") == FORMAT and known.get("dataset", {}).get("sha256") == source["sha256"]
                and known.get("shape") == list(shape) and target.is_file()
                and target.stat().st_size == known.get("size")):
            mapped = np.load(target, mmap_mode="r")
            if mapped.shape == tuple(shape) and mapped.dtype == np.uint8:
                if known["dataset"] != source:
                    _write_json(record, {**known, "dataset": source})
                return mapped
        with atomic_path(target) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=tuple(shape))
            fill(out)
            out.flush()
            del out
            size = tmp.stat().st_size
        _write_json(record, {"format": FORMAT, "dataset": source, "shape": list(shape), "size": size})
        return np.load(target, mmap_mode="r")
    except except_ok as exc:
        log.warning("images kept in memory: cannot map %s (%s)", target, exc)
        return None


def _write_json(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True), encoding="utf-8")


def release(array: np.ndarray, start: int, stop: int) -> None:
    """Drop rows [start, stop) of a memory-mapped array from this process's resident memory (they
    stay in the page cache: touching them again is a minor fault, not a disk read). No-op for an
    array that is not a map."""
    import mmap

    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    mm = getattr(base, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not array.flags.c_contiguous:
        return
    row = int(np.prod(array.shape[1:])) * array.itemsize
    offset = int(array.__array_interface__["data"][0] - np.frombuffer(mm, dtype=np.uint8, count=1).ctypes.data)
    lo, hi = offset + start * row, offset + stop * row
    page = mmap.PAGESIZE
    lo, hi = -(-lo // page) * page, (hi // page) * page  # whole pages inside the range only
    if hi > lo:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
