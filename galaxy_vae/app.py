"""Streamlit glue for the pages: cached loaders, the shared sidebar, galleries and uploads.

The only module of galaxy_vae that imports streamlit. Heavy objects -- datasets, models,
catalogues (latents + neighbour index) -- are built once per (file, modification time) with
``st.cache_resource`` and shared by every session and page; a rerun only looks them up.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import streamlit as st

# Before torch loads OpenMP, so that every thread starts with one (see use_app_torch_threads).
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

from galaxy_vae.catalogue import Catalogue, ModelSpace, PixelSpace
from galaxy_vae.checkpoints import CHECKPOINT_DIR, Checkpoint, list_checkpoints, load_checkpoint
from galaxy_vae.data import GALAXY10_SDSS_CLASSES, GalaxyData, model_view, open_for_search
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.fetch import data_dir
from galaxy_vae.figures import (jpeg_data_uri, latent_bounds, latent_grid_points, mosaic, png_bytes, raster_map,
                                upscale)
from galaxy_vae.framing import catalogue_extent
from galaxy_vae.generate import display_scale
from galaxy_vae.images import PreparedImage, prepare_upload
from galaxy_vae.lookalikes import Ranking, rank_all, similarities
from galaxy_vae.quality import ClassExamples, head_confusion, quality_table as _quality_rows, validation_examples

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "tif", "tiff"]
DEFAULT_DATASET = "gz1_sample.h5"
TIMINGS_ENV = "GALAXY_VAE_TIMINGS"  # a JSONL file: pages append their server time (benchmarks)
APP_TORCH_THREADS = 1  # torch threads per script run (see use_app_torch_threads)
BACKGROUND_GRID = 24  # decoded galaxies per side behind the latent map


def use_app_torch_threads(n: int = APP_TORCH_THREADS) -> None:
    """Run the app's models on ``n`` torch threads (called once, when the pages first import app).

    Pages run models on one or a few images at a time (a slider move decodes one latent, the
    invariant search encodes 8 views), where handing work to OpenMP threads costs more than the
    work itself: on a busy 2-core machine one decode took 45-150 ms with torch's default 2 threads
    and 3 ms with one (`python -m galaxy_vae bench`: decode_one_ms_p50_*). Results are
    bit-identical. Concurrent sessions still use every core: each script run is its own thread.

    Each script run being a new thread is also why OMP_NUM_THREADS=1 is set before torch loads:
    without it, OpenMP regions in new threads still started teams of its default 2 (the process
    held 6 OS threads instead of 2), and their idle workers, spinning, took the slider fragment
    from 19 to 37 ms. A user's own OMP_NUM_THREADS is kept.
    """
    torch.set_num_threads(n)


use_app_torch_threads()


def _stamp(path: Path) -> tuple[int, int]:
    """(modification time in ns, size): part of every cache key, so a rebuilt file is re-read, even
    one copied over with its old date kept."""
    st_ = path.stat()
    return st_.st_mtime_ns, st_.st_size


# --- cached loaders (keyed by path strings and stamps: hashable, cheap) -------------------------

@st.cache_resource(show_spinner="Reading the galaxy catalogue…", max_entries=4)
def _load_data(path: str, stamp: tuple, challenge: bool) -> GalaxyData:
    return open_for_search(path, challenge)


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _load_checkpoint(path: str, stamp: tuple) -> Checkpoint:
    return load_checkpoint(path)


@st.cache_resource(show_spinner="Encoding every galaxy…", max_entries=8)
def _model_catalogue(data_key: tuple, ckpt_key: tuple) -> Catalogue:
    return Catalogue(_load_data(*data_key), ModelSpace(_load_checkpoint(*ckpt_key)))


@st.cache_resource(show_spinner="Preparing the pixel baseline…", max_entries=2)
def _pixel_catalogue(data_key: tuple) -> Catalogue:
    return Catalogue(_load_data(*data_key), PixelSpace())


@st.cache_resource(show_spinner="Ranking the catalogue…", max_entries=16)
def _ranking(data_key: tuple, ckpt_key: tuple, dense_key: tuple | None, query_sha1: str, _query: np.ndarray) -> Ranking:
    dense = _model_catalogue(data_key, dense_key) if dense_key else None
    sims = similarities(_model_catalogue(data_key, ckpt_key), _pixel_catalogue(data_key), dense)
    return rank_all(_query, sims)


@st.cache_resource(max_entries=4)
def _target_extent(data_key: tuple) -> float:
    return catalogue_extent(_load_data(*data_key).images)


def _map_extent(cat: Catalogue) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the map: the range its galaxies occupy plus a margin."""
    lo, hi = latent_bounds(cat.map_xy)
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


@st.cache_resource(show_spinner="Decoding a grid of galaxies…", max_entries=16)
def _manifold(data_key: tuple, ckpt_key: tuple, n: int) -> tuple[np.ndarray, tuple, bytes]:
    """Galaxies decoded on an n x n grid over the map: (mosaic, extent, PNG of it as displayed)."""
    cat = _model_catalogue(data_key, ckpt_key)
    extent = _map_extent(cat)
    lo, hi = np.array(extent[::2]), np.array(extent[1::2])
    image = mosaic(cat.decode(cat.projection.to_latent(latent_grid_points(lo, hi, n))), n)
    return image, extent, png_bytes(upscale(image, display_scale(image.shape[0], 640)))


@st.cache_resource(show_spinner=False, max_entries=8)
def _map_background(data_key: tuple, ckpt_key: tuple) -> tuple[str, tuple]:
    """The map's faint background (a 24 x 24 decoded grid) as a JPEG data URI, with its extent.
    JPEG: the 1,536 px grid is ~0.3 MB where PNG made the map figure ~5.5 MB on every change."""
    image, extent, _ = _manifold(data_key, ckpt_key, BACKGROUND_GRID)
    return jpeg_data_uri(image), extent


@st.cache_resource(show_spinner=False, max_entries=1024)
def _thumbnail_png(data_key: tuple, row: int, scale: int) -> bytes:
    """One catalogue galaxy as the models see it (64x64), upscaled, as PNG: encoded once, reused on
    every slider move that lands near it (a few kB each; bytes are immutable, so sharing is safe)."""
    return png_bytes(upscale(model_view(_load_data(*data_key).images[row]), scale))


@st.cache_resource(max_entries=8)
def _raster_map(data_key: tuple, ckpt_key: tuple) -> tuple[np.ndarray, tuple]:
    cat = _model_catalogue(data_key, ckpt_key)
    extent = _map_extent(cat)
    return raster_map(cat.map_xy, cat.data.labels, cat.data.class_names, extent), extent


@dataclass(frozen=True)
class Session:
    """What the sidebar selected: a dataset and a checkpoint, with cached views of both."""

    data_key: tuple  # (path, stamp, challenge subset?)
    ckpt_key: tuple  # (path, stamp)

    @property
    def data(self) -> GalaxyData:
        return _load_data(*self.data_key)

    @property
    def checkpoint(self) -> Checkpoint:
        return _load_checkpoint(*self.ckpt_key)

    @property
    def catalogue(self) -> Catalogue:
        return _model_catalogue(self.data_key, self.ckpt_key)

    def milky_way_ranking(self, query: np.ndarray, dense_path: Path | None) -> Ranking:
        """The catalogue ranked for ``query`` (a stored cutout) under every similarity, cached per
        query, so moving the lookalikes' sliders does not re-rank it (the pixel search alone takes
        tens of ms at the sample's size)."""
        dense_key = (str(dense_path), _stamp(dense_path)) if dense_path else None
        query = np.ascontiguousarray(query)
        return _ranking(self.data_key, self.ckpt_key, dense_key, hashlib.sha1(query.tobytes()).hexdigest(), query)

    def manifold(self, n: int) -> tuple[np.ndarray, tuple, bytes]:
        """Decoded n x n grid over the map: (mosaic uint8, extent (x0, x1, y0, y1), PNG as displayed)."""
        return _manifold(self.data_key, self.ckpt_key, n)

    def map_background(self) -> tuple[str, tuple]:
        """The latent map's optional background of decoded galaxies: (image data URI, extent)."""
        return _map_background(self.data_key, self.ckpt_key)

    def raster_map(self) -> tuple[np.ndarray, tuple]:
        """Every galaxy drawn once as a small image, with its extent, for :func:`figures.mark_map`."""
        return _raster_map(self.data_key, self.ckpt_key)

    def thumbnail_png(self, row: int, scale: int = 4) -> bytes:
        """PNG of catalogue galaxy ``row`` (central 64x64, upscaled ``scale`` times), cached."""
        return _thumbnail_png(self.data_key, int(row), int(scale))

    @property
    def target_extent(self) -> float:
        """How much of its frame a catalogue galaxy fills (framing target for uploads)."""
        return _target_extent(self.data_key)


# --- sidebar ------------------------------------------------------------------------------------

def remember(**defaults) -> None:
    """Keep these widgets' values (keys -> first-visit defaults) across page switches.

    Streamlit drops a widget's state on a run of a page that does not draw it, so a slider set on
    one page came back at its default after a visit to another. Each value is copied to a store
    that is never dropped, and copied back when the widget's own state is gone. Call it before
    the widgets, and create them without a default value (the default lives here).
    """
    state = st.session_state
    kept = state.setdefault("_remembered", {})
    for key, default in defaults.items():
        if key in state:
            kept[key] = state[key]
        else:
            state[key] = kept.get(key, default)


def _remembered_select(label: str, options: list[Path], key: str, default: str | None, help: str) -> Path:
    """A selectbox whose choice survives page switches (kept under ``key`` in session state)."""
    names = [p.name for p in options]
    if st.session_state.get(key) not in names:
        st.session_state[key] = default if default in names else names[0]
    widget = f"_{key}_widget"
    st.session_state[widget] = st.session_state[key]  # re-seed: widget state is dropped on page switch
    choice = st.sidebar.selectbox(label, names, key=widget, help=help,
                                  on_change=lambda: st.session_state.update({key: st.session_state[widget]}))
    return options[names.index(choice)]


def follow_app_navigation() -> None:
    """Make a deep link (e.g. /latent_map) as a fresh server's first request use the app's navigation.

    Streamlit runs such a request through its legacy pages/-folder mode -- this project's pages/
    sits beside streamlit_app.py -- which skips streamlit_app.py (page titles, wide layout) until
    some visitor loads `/`. Switching that mode off and rerunning hands the request to
    st.navigation, which resolves the same page by its URL.
    """
    from streamlit.runtime.pages_manager import PagesManager  # the flag st.navigation itself clears

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def sidebar() -> Session:
    """Dataset and checkpoint selectors. Missing or broken files stop the page with how to fix it."""
    follow_app_navigation()
    folder = data_dir()
    datasets = sorted(folder.glob("*.h5")) + sorted(folder.glob("*.hdf5"))
    if not datasets:
        st.error(f"No dataset found in `{folder}`.")
        st.info("Build the offline sample with `make sample`, fetch Galaxy10 with "
                "`python -m galaxy_vae fetch galaxy10`, or import your own cutouts with "
                "`python -m galaxy_vae import DIR --labels CSV --out data/mine.h5`.")
        st.stop()
    checkpoints = list_checkpoints(CHECKPOINT_DIR)
    if not checkpoints:
        st.error(f"No checkpoint found in `{CHECKPOINT_DIR}`.")
        st.info("Train one with `python -m galaxy_vae train --model galaxy_vae --data data/gz1_sample.h5 "
                "--out checkpoints/galaxy_vae.safetensors` (see checkpoints/README.md).")
        st.stop()
    data_path = _remembered_select("Dataset", datasets, "dataset", DEFAULT_DATASET,
                                   f"HDF5 files in {folder}")
    ckpt_path = _remembered_select("Model", checkpoints, "checkpoint", checkpoints[0].name,
                                   f"Checkpoints in {CHECKPOINT_DIR}; the first is the default")
    try:
        challenge = False
        probe = _load_data(str(data_path), _stamp(data_path), False)
        if probe.class_names == GALAXY10_SDSS_CLASSES:
            remember(challenge=True)
            challenge = st.sidebar.toggle("Challenge subset (6 face-on classes)", key="challenge",
                                          help="Drop cigar-shaped and edge-on classes 3-6, as the Milky Way challenge does.")
        session = Session((str(data_path), _stamp(data_path), challenge), (str(ckpt_path), _stamp(ckpt_path)))
        session.checkpoint  # load now, so a broken file is reported here
    except GalaxyVAEError as exc:
        st.error(str(exc))
        st.stop()
    st.sidebar.caption(f"{len(session.data):,} galaxies · {type(session.checkpoint.model).__name__} "
                       f"({session.checkpoint.model.latent_dim}-D latent)")
    return session


# --- model quality (pages/model_quality.py): evaluations, cached per file stamps ---------------

@st.cache_data(show_spinner="Evaluating every checkpoint on its held-out galaxies…", max_entries=4)
def _quality_table(data_key: tuple, ckpt_keys: tuple) -> tuple[list[dict], list[str]]:
    return _quality_rows([_load_checkpoint(*k) for k in ckpt_keys], _load_data(*data_key))


def quality_table(session: Session) -> tuple[list[dict], list[str]]:
    """(rows, problems) of :func:`galaxy_vae.quality.quality_table` for every checkpoint in
    checkpoints/ on the selected dataset; recomputed only when a file's modification time changes."""
    keys = tuple((str(p), _stamp(p)) for p in list_checkpoints(CHECKPOINT_DIR))
    return _quality_table(session.data_key, keys)


@st.cache_resource(show_spinner="Reconstructing held-out galaxies…", max_entries=8)
def _validation_examples(data_key: tuple, ckpt_key: tuple, per_class: int) -> list[ClassExamples]:
    return validation_examples(_load_checkpoint(*ckpt_key), _load_data(*data_key), per_class)


def validation_reconstructions(session: Session, per_class: int = 3) -> list[ClassExamples]:
    """A few held-out galaxies per class beside the selected checkpoint's reconstructions."""
    return _validation_examples(session.data_key, session.ckpt_key, per_class)


@st.cache_resource(show_spinner="Classifying held-out galaxies…", max_entries=8)
def _head_confusion(data_key: tuple, ckpt_key: tuple) -> np.ndarray | None:
    return head_confusion(_load_checkpoint(*ckpt_key), _load_data(*data_key))


def confusion(session: Session) -> np.ndarray | None:
    """The selected checkpoint's class-head confusion matrix on its validation split (None: no head)."""
    return _head_confusion(session.data_key, session.ckpt_key)


# --- widgets shared by pages --------------------------------------------------------------------

def gallery(images: Sequence[np.ndarray | bytes], captions: Sequence[str], columns: int = 6, scale: int = 2) -> None:
    """Thumbnails in a grid, crisply upscaled (nearest neighbour), each with its caption as alt text.
    ``images``: uint8 arrays, or PNG files already encoded (shown as they are)."""
    cols = st.columns(columns)
    for i, (img, caption) in enumerate(zip(images, captions)):
        if isinstance(img, bytes):
            cols[i % columns].image(img, caption=caption, alt=caption, output_format="PNG")
        else:
            cols[i % columns].image(upscale(img, scale), caption=caption, alt=caption)


def catalogue_gallery(session: Session, rows: Sequence[int], captions: Sequence[str], columns: int = 6,
                      scale: int = 2) -> None:
    """Catalogue galaxies by row, from :meth:`Session.thumbnail_png` (each encoded once per session
    of the server, not on every rerun of the page that shows it)."""
    gallery([session.thumbnail_png(r, scale) for r in rows], captions, columns)


def upload(label: str, key: str, session: Session, framing: bool = True, on_change=None) -> PreparedImage | None:
    """A galaxy picture from the user, prepared like the catalogue; errors shown, never raised."""
    file = st.file_uploader(label, type=UPLOAD_TYPES, key=key, on_change=on_change)
    if file is None:
        return None
    try:
        return _prepared_upload(file.file_id, session.target_extent if framing else None, file)
    except GalaxyVAEError as exc:
        st.error(str(exc))
        return None


@st.cache_resource(show_spinner="Preparing your picture…", max_entries=8)
def _prepared_upload(file_id: str, target: float | None, _file) -> PreparedImage:
    """An upload prepared once per file and framing target, not on every rerun (a large photo takes
    most of a second). The file object itself is passed, so messages name the file."""
    _file.seek(0)
    return prepare_upload(_file, framing="none" if target is None else "auto", target_fraction=target)


@st.cache_resource(show_spinner=False, max_entries=8)
def _prepared_file(path: str, stamp: tuple, target: float | None) -> PreparedImage:
    return prepare_upload(path, framing="none" if target is None else "auto", target_fraction=target)


def prepared_file(path: Path, session: Session, framing: bool = True) -> PreparedImage | None:
    """A picture on disk (the Milky Way) prepared as :func:`upload` prepares one, cached by path and
    modification time (its stored cutout is read-only); errors shown, never raised."""
    try:
        return _prepared_file(str(path), _stamp(Path(path)), session.target_extent if framing else None)
    except GalaxyVAEError as exc:
        st.error(str(exc))
        return None


def show_query(cat: Catalogue, prepared: PreparedImage, left, right) -> None:
    """A prepared upload as the model sees it (in ``left``) beside its reconstruction (``right``),
    then its preparation notes and, when it lies outside the catalogue, a warning."""
    left.image(upscale(model_view(prepared.stored), 3), caption="The query, prepared as the catalogue is")
    right.image(upscale(cat.reconstruct(prepared.stored), 3), caption="Its reconstruction by the model")
    if prepared.notes:
        st.caption(" · ".join(prepared.notes))
    warn_if_outlier(cat, prepared.stored)


def warn_if_outlier(cat: Catalogue, stored: np.ndarray) -> None:
    """A warning when a query cutout lies outside the catalogue (:meth:`Catalogue.outlier_report`).
    The first call per model measures the catalogue's own reconstruction errors (seconds at the
    sample's size): a spinner says so."""
    with st.spinner("Measuring how well the model reconstructs its own catalogue (once per model)…"):
        report = cat.outlier_report(stored)
    if report["outlier"]:
        st.warning(outlier_message(report))


def outlier_message(report: dict) -> str:
    """Plain words for :meth:`Catalogue.outlier_report` when the query lies outside the catalogue."""
    parts = []
    if report["nn_distance"] > report["nn_threshold"]:
        parts.append(f"its nearest catalogue galaxy is {report['nn_distance']:.3f} away, farther than for "
                     f"99 % of catalogue galaxies ({report['nn_threshold']:.3f})")
    if report.get("recon_error", 0.0) > report.get("recon_threshold", float("inf")):
        parts.append(f"the model reconstructs it worse (MSE {report['recon_error']:.4f}) than 99 % of the "
                     f"catalogue ({report['recon_threshold']:.4f})")
    return ("This picture lies outside what the catalogue contains: " + "; ".join(parts) +
            ". Its neighbours are the closest the catalogue has, but may not look much like it.")


@contextmanager
def timed(name: str):
    """Record the server time of a page or fragment run to $GALAXY_VAE_TIMINGS (benchmarks only)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        path = os.environ.get(TIMINGS_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"name": name, "ms": (time.perf_counter() - start) * 1e3}) + "\n")
