"""Survey-scale embedding on Ray Data: ``python -m galaxy_vae embed --engine ray``.

The same numbers as the single-process ``embed`` (:func:`galaxy_vae.embed.encode_images`, the
reconstruction errors of :func:`galaxy_vae.embed.reconstruct_from`), computed by a pool of Ray
actors that each load the checkpoints once:

    shards: row ranges [start, stop) of the catalogue       (an HDF5 file's rows, hdf5.search_rows;
            --ray.data.from_items-->  one block per shard      or a folder's labelled pictures)
    --map_batches(ShardEncoder, ActorPoolStrategy(size=workers), num_cpus=, num_gpus=)-->
            per shard: read the rows (hdf5.read_rows) or decode and frame the pictures
            (importer.cutout_file), encode them; every output row carries its global row id
    --driver: iter_batches--> part-*.parquet shards (id, embeddings, errors), a progress bar over rows
    --assemble--> every id in [0, N) exactly once, in row order (a duplicate from a retried task
            must be identical, and is dropped; a missing id is an error, never a silent gap)

:func:`persist` then writes the result into the persisted catalogue the app reads
(:mod:`galaxy_vae.store`, beside the dataset file; a folder is first written as a dataset file, as
``import`` writes it), and :meth:`Catalogue.persist_all` derives the index and the rest from it.

A worker that dies is restarted and its shard run again: Ray Data's actor pools default to
``max_restarts=-1`` and ``max_task_retries=-1``, and the assembly above makes a retry harmless.
Ray is imported only here, inside the functions that need it: ``import galaxy_vae`` never loads
it, and a missing Ray is a :class:`GalaxyVAEError` naming the extra to install.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from galaxy_vae.errors import GalaxyVAEError

log = logging.getLogger(__name__)

SHARD = 1024  # catalogue rows per Ray task: large enough to amortise a call, small enough to spread
INSTALL = "Install it with: pip install galaxy_vae[scale] (or pip install 'ray[data]==2.60.0')."


def require_ray():
    """The ``ray`` module, or the error that says how to install it."""
    try:
        import ray
        import ray.data  # the Data library: ray alone may lack it
    except ImportError as exc:
        raise GalaxyVAEError("The ray engine needs Ray Data", expected="the ray package (ray[data])",
                             found=f"it is not installed ({exc})", fix=INSTALL) from None
    return ray


def start_ray(address: str | None = None, num_cpus: int | None = None):
    """Connect to the cluster at ``address`` (else ``$RAY_ADDRESS``), or start a local Ray instance
    without the dashboard or usage statistics; an instance already started in this process is used."""
    ray = require_ray()
    if not ray.is_initialized():
        if not (address or os.environ.get("RAY_ADDRESS")):
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(num_cpus=num_cpus, include_dashboard=False)
        else:
            ray.init(address=address)
    return ray


# --- what the actors read -------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """Where catalogue row i comes from: an HDF5 file's ``rows[i]``, or picture ``files[i]``."""

    path: Path  # the HDF5 file, or the folder
    rows: np.ndarray | None = None  # (N,) file rows of an HDF5 catalogue
    files: tuple[str, ...] = ()  # a folder's labelled pictures, in import order
    galaxy_zoo_frame: bool = True  # pictures: the Galaxy10 crop (else resize only, as import --no-crop)

    @property
    def is_folder(self) -> bool:
        return self.rows is None

    def __len__(self) -> int:
        return len(self.files) if self.is_folder else len(self.rows)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Rows [start, stop): (uint8 (B, 69, 69, 3), readable (B,) bool, error per row ("" if read))."""
        if not self.is_folder:
            from galaxy_vae.hdf5 import read_rows

            images = read_rows(self.path, self.rows[start:stop])
            return images, np.ones(len(images), dtype=bool), [""] * len(images)
        from galaxy_vae.images import STORED_SIZE
        from galaxy_vae.importer import cutout_file

        images = np.zeros((stop - start, STORED_SIZE, STORED_SIZE, 3), dtype=np.uint8)
        errors = []
        for i, path in enumerate(self.files[start:stop]):
            cutout, error = cutout_file(path, self.galaxy_zoo_frame)
            if cutout is not None:
                images[i] = cutout
            errors.append(error)
        return images, np.array([not e for e in errors]), errors


def shards(n: int, size: int = SHARD) -> list[dict[str, int]]:
    """[{"start", "stop"}, ...] covering rows 0..n-1 in order."""
    return [{"start": s, "stop": min(s + size, n)} for s in range(0, n, size)]


# --- the actor ------------------------------------------------------------------------------------

class ShardEncoder:
    """A Ray actor holding the models: built once per worker (checkpoints loaded once), then called
    with batches of shards; returns one output row per catalogue row of those shards.

    Columns: ``id`` (global row), ``ok`` (the row could be read), ``error``, ``vectors/<name>``
    (B, d) float32 and, for models with a decoder, ``recon_errors/<name>`` (B,) float32 per
    checkpoint ``name`` (its file stem); ``image`` (B, 69, 69, 3) uint8 for a folder.

    ``crash_once``: a file whose presence makes the first worker to see it delete it and exit its
    process hard before its shard is done -- how the tests prove that a lost worker costs nothing.
    """

    def __init__(self, source: Source, checkpoints: list[str], batch_size: int, threads: int = 1,
                 crash_once: str | None = None):
        import torch

        from galaxy_vae.checkpoints import load_checkpoint

        torch.set_num_threads(max(1, threads))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.source, self.batch_size, self.crash_once = source, batch_size, crash_once
        self.models = {}
        for path in checkpoints:
            ckpt = load_checkpoint(path)
            self.models[Path(path).stem] = ckpt.model.to(device).eval()

    def _maybe_crash(self) -> None:
        if self.crash_once:
            try:
                os.unlink(self.crash_once)
            except FileNotFoundError:
                return
            log.warning("crash_once: worker %d exits before finishing its shard", os.getpid())
            os._exit(1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from galaxy_vae.embed import encode_images, recon_errors

        parts = []
        for start, stop in zip(batch["start"], batch["stop"]):
            images, ok, errors = self.source.read(int(start), int(stop))
            self._maybe_crash()
            out = {"id": np.arange(start, stop, dtype=np.int64), "ok": ok, "error": np.array(errors, dtype=str)}
            for name, model in self.models.items():
                z = np.full((len(images), model.latent_dim), np.nan, dtype=np.float32)
                z[ok] = encode_images(model, images[ok], self.batch_size)
                out[f"vectors/{name}"] = z
                if hasattr(model, "decode"):  # as the local engine's catalogue computes them
                    err = np.full(len(images), np.nan, dtype=np.float32)
                    err[ok] = recon_errors(model, images[ok], self.batch_size)
                    out[f"recon_errors/{name}"] = err
            if self.source.is_folder:
                out["image"] = images
            parts.append(out)
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


# --- the driver -----------------------------------------------------------------------------------

@dataclass
class Embedded:
    """What a Ray run produced, in catalogue row order."""

    n: int
    columns: dict[str, np.ndarray]  # "vectors/<name>" (N, d), "recon_errors/<name>" (N,), "ok", "error", "image"
    shards: list[Path] = field(default_factory=list)  # the part files written
    seconds: float = 0.0  # from submitting the pipeline to the last row received (workers' start-up included)
    first_seconds: float = 0.0  # ... to the first rows received: mostly the workers' start-up
    first_rows: int = 0  # rows in that first batch
    duplicates: int = 0  # rows received more than once (retried work), dropped

    def vectors(self, name: str) -> np.ndarray:
        return self.columns[f"vectors/{name}"]

    def recon_errors(self, name: str) -> np.ndarray | None:
        return self.columns.get(f"recon_errors/{name}")


def assemble(batches: Iterable[dict[str, np.ndarray]], n: int) -> tuple[dict[str, np.ndarray], int]:
    """Output batches in any order -> (columns in row order, duplicates dropped). Every id in
    [0, n) must appear; one that appears twice must carry the same values both times."""
    batches = list(batches)
    if not batches:
        raise GalaxyVAEError("The Ray run returned nothing", expected=f"{n} rows", found="0 rows",
                             fix="Check the workers' logs (ray logs, or /tmp/ray/session_latest/logs).")
    cols = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
    ids = cols["id"]
    bad = (ids < 0) | (ids >= n)
    if bad.any():
        raise GalaxyVAEError("The Ray run returned rows that are not the catalogue's",
                             expected=f"row ids in 0..{n - 1}", found=f"{int(bad.sum())} others (e.g. {ids[bad][0]})",
                             fix="This is a bug: report it with the command you ran.")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    if first.sum() != n:
        missing = np.setdiff1d(np.arange(n), ids)
        raise GalaxyVAEError("The Ray run lost rows", expected=f"every row id 0..{n - 1} once",
                             found=f"{len(missing)} missing (first: {missing[:5].tolist()})",
                             fix="Run the command again; if it recurs, check the workers' logs.")
    out = {}
    for key, values in cols.items():
        values = values[order]
        repeat = np.flatnonzero(~first)
        if len(repeat):  # a retried shard: its rows must agree with the copy kept
            kept = np.searchsorted(ids, ids[repeat])
            same = values[repeat] == values[kept]
            if values.dtype.kind == "f":
                same |= np.isnan(values[repeat]) & np.isnan(values[kept])
            if not np.all(same):
                raise GalaxyVAEError("The Ray run returned one row twice with different values",
                                     expected="identical copies of a retried row", found=f"{key} differs",
                                     fix="Run the command again with one worker per GPU or CPU model.")
        out[key] = values[first]
    return out, int((~first).sum())


def write_shard(path: Path, batch: dict[str, np.ndarray]) -> None:
    """One part of the embeddings as Parquet: ``id``, ``ok``, ``error``, each ``vectors/<name>`` as a
    fixed-size list of float32, each ``recon_errors/<name>`` (pixels are not written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from galaxy_vae.paths import atomic_path

    arrays = {}
    for key, values in batch.items():
        if key == "image":
            continue
        if values.ndim == 2:
            arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        else:
            arrays[key] = pa.array(values)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(arrays), tmp)


def read_shards(folder: Path) -> list[dict[str, np.ndarray]]:
    """The part files of ``folder`` back as batches (the columns :func:`write_shard` wrote)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    for path in sorted(Path(folder).glob("part-*.parquet")):
        table = pq.read_table(path)
        batch = {}
        for key in table.column_names:
            col = table.column(key).combine_chunks()
            if pa.types.is_fixed_size_list(col.type):
                batch[key] = col.flatten().to_numpy().reshape(len(col), col.type.list_size)
            else:
                batch[key] = col.to_numpy(zero_copy_only=False)
        out.append(batch)
    return out


def run(source: Source, checkpoints: list[Path], shard_dir: Path, *, workers: int = 1, cpus_per_worker: float = 1,
        gpus_per_worker: float = 0, batch_size: int | None = None, shard_size: int | None = None, progress: bool = True,
        crash_once: Path | None = None) -> Embedded:
    """Embed every row of ``source`` with each checkpoint on ``workers`` Ray actors (Ray started or
    connected first, :func:`start_ray`); shards written to ``shard_dir`` (its old parts removed).
    ``shard_size``: rows per task (default: at most SHARD, and at least 4 shards per worker)."""
    from galaxy_vae.embed import BATCH

    ray = start_ray()
    n = len(source)
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    for old in shard_dir.glob("part-*.parquet"):
        old.unlink()
    items = shards(n, shard_size or max(1, min(SHARD, -(-n // (4 * workers)))))
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    kwargs = {"num_gpus": gpus_per_worker} if gpus_per_worker else {}
    ds = ds.map_batches(
        ShardEncoder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
        fn_constructor_kwargs={"source": source, "checkpoints": [str(p) for p in checkpoints],
                               "batch_size": batch_size or BATCH, "threads": max(1, int(cpus_per_worker)),
                               "crash_once": str(crash_once) if crash_once else None}, **kwargs)
    start = time.perf_counter()
    received, written, first = [], [], None
    with tqdm(total=n, desc=f"embedding on {workers} Ray worker(s)", unit="img", disable=not progress) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            path = shard_dir / f"part-{len(written):05d}.parquet"
            write_shard(path, batch)
            received.append(batch)
            written.append(path)
            bar.update(len(batch["id"]))
            first = first or (time.perf_counter() - start, len(batch["id"]))
    seconds = time.perf_counter() - start
    columns, duplicates = assemble(received, n)
    if duplicates:
        log.warning("%d rows arrived twice (a retried shard): one copy of each kept", duplicates)
    return Embedded(n, columns, written, seconds, *(first or (seconds, 0)), duplicates)


# --- into the persisted catalogue -----------------------------------------------------------------

def folder_source(folder: Path, labels_csv: Path, class_names=None, galaxy_zoo_frame: bool = True):
    """(Source, Pictures) of a folder's labelled pictures, as ``import`` finds them."""
    from galaxy_vae.importer import find_pictures

    found = find_pictures(folder, labels_csv, class_names)
    return Source(Path(folder), files=tuple(map(str, found.files)), galaxy_zoo_frame=galaxy_zoo_frame), found


def hdf5_source(path: Path, challenge: bool = True) -> Source:
    """The rows of an HDF5 file the app's catalogue holds (the challenge subset of Galaxy10 SDSS)."""
    from galaxy_vae.hdf5 import search_rows

    return Source(Path(path), rows=search_rows(path, challenge))


def write_folder_dataset(result: Embedded, pictures, out: Path, source: str | None = None) -> Path:
    """The pictures that could be read, as the dataset file ``import`` writes from the same folder."""
    from galaxy_vae.hdf5 import write_dataset
    from galaxy_vae.importer import default_source

    ok = result.columns["ok"]
    if not ok.any():
        raise GalaxyVAEError(f"Cannot embed {out.stem}", expected="at least one readable picture",
                             found=f"{len(ok)} unreadable files", fix="Check the files are images.")
    ids = [Path(f).stem for f, good in zip(pictures.files, ok) if good]
    labels = np.asarray(pictures.labels, dtype=np.int64)[ok]
    folder = Path(pictures.files[0]).parent
    return write_dataset(out, result.columns["image"][ok], labels, ids, pictures.class_names,
                         source or default_source(folder))


def persist(result: Embedded, dataset: Path, checkpoints: list[Path], file_rows: np.ndarray | None = None,
            challenge: bool = True, progress: bool = True) -> list:
    """Write each checkpoint's vectors (and reconstruction errors) into the store beside ``dataset``
    where it does not hold them yet, then derive the rest (:meth:`Catalogue.persist_all`): the files
    the app and ``search`` read. ``file_rows``: the result's row of each row of the dataset file (a
    folder: its readable pictures); None when the result's rows are the catalogue's (an HDF5 source).
    Returns the catalogues, one per checkpoint."""
    from galaxy_vae.catalogue import Catalogue, ModelSpace, store_for
    from galaxy_vae.checkpoints import load_checkpoint
    from galaxy_vae.hdf5 import open_for_search, search_rows

    data = open_for_search(dataset, challenge=challenge, mapped=True)
    keep = np.arange(result.n) if file_rows is None else np.asarray(file_rows)[search_rows(dataset, challenge)]
    if len(keep) != len(data):
        raise GalaxyVAEError(f"Cannot persist the embeddings of {dataset}", expected=f"{len(data)} rows",
                             found=f"{len(keep)} embedded", fix="Run embed --engine ray on the dataset as it is now.")
    done = []
    for path in checkpoints:
        space = ModelSpace(load_checkpoint(path))
        store = store_for(data, space)
        if store is None:
            log.warning("%s: the dataset's folder cannot be written; the catalogue is encoded again in memory", path)
        else:
            for key, name in ((f"vectors/{Path(path).stem}", "vectors"), (f"recon_errors/{Path(path).stem}",
                                                                           "recon_errors")):
                if key in result.columns and store.array(name) is None:
                    store.save_array(name, np.ascontiguousarray(result.columns[key][keep]))
        cat = Catalogue(data, space, progress, store)
        cat.persist_all(progress=progress)
        done.append(cat)
    return done
