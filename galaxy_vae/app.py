"""Streamlit glue for the pages: cached loaders, the shared sidebar, galleries and uploads.

The only module of galaxy_vae that imports streamlit. Heavy objects -- datasets, models,
catalogues (latents + neighbour index) -- are built once per (file, modification time, size) with
``st.cache_resource`` and shared by every session and page; a rerun only looks them up.

State is Streamlit's own: the shared widgets (dataset, model) are drawn once per run by the entry
file (:func:`sidebar`), so every page sees the same choice; page widgets keep their values across
page switches with ``persist_state="session"`` and, where a link should reproduce the view, in the
URL with ``bind="query-params"``. What Streamlit cannot do is handled here and said so:
:func:`follow_deep_link` (a fresh server's first request for a page skips the entry file).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import streamlit as st

# Before torch loads OpenMP: script runs are new threads, and OpenMP teams started in them spin on
# a busy machine, doubling a slider move's time. A user's own setting is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch

from galaxy_vae.captions import error_text, galaxy_caption, join_notes, outlier_message
from galaxy_vae.catalogue import Catalogue, ModelSpace, PixelSpace, Query
from galaxy_vae.checkpoints import HOW_TO_GET as HOW_TO_GET_CHECKPOINT
from galaxy_vae.checkpoints import Checkpoint, list_checkpoints, load_checkpoint
from galaxy_vae.data import GALAXY10_SDSS_CLASSES, HOW_TO_GET_DATA, GalaxyData, model_view
from galaxy_vae.errors import GalaxyVAEError
from galaxy_vae.extent import catalogue_extent
from galaxy_vae.generate import latent_grid_points, map_extent
from galaxy_vae.hdf5 import open_for_search
from galaxy_vae.images import UPLOAD_EXTENSIONS, PreparedImage, prepare_upload
from galaxy_vae.lookalikes import Ranking, rank_all, similarities
from galaxy_vae.paths import SAMPLE_NAME, checkpoint_dir, data_dir, dense_ae_checkpoint
from galaxy_vae.quality import ClassExamples, head_confusion, validation_examples
from galaxy_vae.quality import quality_table as _quality_rows
from galaxy_vae.raster import data_uri, display_scale, png_bytes, raster_map, tile, upscale

# A slider move decodes one latent: handing that to OpenMP threads costs more than the work.
# Concurrent sessions still use every core, each script run being its own thread.
torch.set_num_threads(1)

# The app's pages in a newcomer's order: (file, title, icon, what it is for). The entry file
# registers them with st.navigation; the home page links to them in this order.
PAGES = [("pages/home.py", "Home", ":material/home:", "what galaxy_vae is for, the dataset and its credits"),
         ("pages/latent_map.py", "Latent map", ":material/scatter_plot:",
          "every galaxy placed by the model; click one, or upload a picture, to see its neighbours"),
         ("pages/generator.py", "Generator", ":material/tune:",
          "decode any point of the latent space, or every step between two galaxies"),
         ("pages/milky_way.py", "Milky Way challenge", ":material/star:",
          "the catalogue galaxies most like our Milky Way, and generated lookalikes"),
         ("pages/model_quality.py", "Models & quality", ":material/analytics:",
          "how each model was trained, and how well each similarity retrieves galaxies of the same class")]
log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong on this page"  # the guard's message (tests look for it)
BACKGROUND_GRID = 24  # decoded galaxies per side behind the latent map
ENTRY_FILE = "streamlit_app.py"  # `streamlit run` target, beside pages/
SESSION_KEY = "_session"  # the Session the sidebar built in this run
DEEP_LINK_KEY = "_deep_link"  # (page file, query params) waiting for the entry file to reach


def stamp(path: Path) -> tuple[int, int]:
    """(modification time in ns, size): part of every cache key, so a rebuilt file is re-read."""
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


@st.cache_resource(show_spinner="Decoding a grid of galaxies…", max_entries=16)
def _manifold(data_key: tuple, ckpt_key: tuple, n: int) -> tuple[np.ndarray, tuple, bytes]:
    """Galaxies decoded on an n x n grid over the map: (mosaic, extent, PNG of it as displayed)."""
    cat = _model_catalogue(data_key, ckpt_key)
    extent = map_extent(cat.map_xy)
    lo, hi = np.array(extent[::2]), np.array(extent[1::2])
    image = tile(cat.decode(cat.projection.to_latent(latent_grid_points(lo, hi, n))), n)
    return image, extent, png_bytes(upscale(image, display_scale(image.shape[0], 640)))


@st.cache_resource(show_spinner=False, max_entries=8)
def _map_background(data_key: tuple, ckpt_key: tuple) -> tuple[str, tuple]:
    """The map's faint background (a 24 x 24 decoded grid) as a JPEG data URI, with its extent.
    JPEG: the 1,536 px grid is ~0.3 MB where PNG made the map figure ~5.5 MB on every change."""
    image, extent, _ = _manifold(data_key, ckpt_key, BACKGROUND_GRID)
    return data_uri(image, "JPEG"), extent


@st.cache_resource(show_spinner=False, max_entries=1024)
def _thumbnail_png(data_key: tuple, row: int, scale: int) -> bytes:
    """One catalogue galaxy as the models see it (64x64), upscaled, as PNG: encoded once, reused on
    every rerun that shows it (a few kB each; bytes are immutable, so sharing is safe)."""
    return png_bytes(upscale(model_view(_load_data(*data_key).images[row]), scale))


@st.cache_resource(max_entries=8)
def _raster_map(data_key: tuple, ckpt_key: tuple) -> tuple[np.ndarray, tuple]:
    cat = _model_catalogue(data_key, ckpt_key)
    extent = map_extent(cat.map_xy)
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

    def milky_way_ranking(self, query: np.ndarray) -> Ranking:
        """The catalogue ranked for ``query`` (a stored cutout) under every similarity, cached per
        query, so moving the lookalikes' sliders does not re-rank it."""
        dense = self.dense_checkpoint()
        dense_key = (str(dense), stamp(dense)) if dense else None
        query = np.ascontiguousarray(query)
        return _ranking(self.data_key, self.ckpt_key, dense_key, hashlib.sha1(query.tobytes()).hexdigest(), query)

    def dense_checkpoint(self) -> Path | None:
        """The seed's 64-D autoencoder when it exists and is not already the selected model."""
        path = dense_ae_checkpoint()
        return path if path and path.resolve() != Path(self.ckpt_key[0]).resolve() else None

    def manifold(self, n: int) -> tuple[np.ndarray, tuple, bytes]:
        """Decoded n x n grid over the map: (mosaic uint8, extent (x0, x1, y0, y1), PNG as displayed)."""
        return _manifold(self.data_key, self.ckpt_key, n)

    def map_background(self) -> tuple[str, tuple]:
        """The latent map's optional background of decoded galaxies: (image data URI, extent)."""
        return _map_background(self.data_key, self.ckpt_key)

    def raster_map(self) -> tuple[np.ndarray, tuple]:
        """Every galaxy drawn once as a small image, with its extent, for :func:`raster.mark_map`."""
        return _raster_map(self.data_key, self.ckpt_key)

    def thumbnail_png(self, row: int, scale: int = 4) -> bytes:
        """PNG of catalogue galaxy ``row`` (central 64x64, upscaled ``scale`` times), cached."""
        return _thumbnail_png(self.data_key, int(row), int(scale))

    @property
    def target_extent(self) -> float:
        """How much of its frame a catalogue galaxy fills (framing target for uploads)."""
        return _target_extent(self.data_key)

    def quality_table(self) -> tuple[list[dict], list[str]]:
        """(rows, problems) of :func:`quality.quality_table` for every checkpoint in the checkpoints
        folder on this dataset; recomputed only when a file changes."""
        return _quality_table(self.data_key, tuple((str(p), stamp(p)) for p in list_checkpoints()))

    def validation_examples(self, per_class: int = 3) -> list[ClassExamples]:
        """A few held-out galaxies per class beside this checkpoint's reconstructions."""
        return _validation_examples(self.data_key, self.ckpt_key, per_class)

    def confusion(self) -> np.ndarray | None:
        """This checkpoint's class-head confusion matrix on its validation split (None: no head)."""
        return _head_confusion(self.data_key, self.ckpt_key)


# --- the shared sidebar and navigation ----------------------------------------------------------

def sidebar() -> None:
    """Dataset and checkpoint selectors, drawn by the entry file on every run so that every page
    shares them. Missing or broken files stop the run with how to fix it."""
    folder, ckpt_folder = data_dir(), checkpoint_dir()
    datasets = sorted(folder.glob("*.h5")) + sorted(folder.glob("*.hdf5"))
    checkpoints = list_checkpoints(ckpt_folder)
    for found, what, where, fix in ((datasets, "dataset", folder, HOW_TO_GET_DATA),
                                    (checkpoints, "checkpoint", ckpt_folder, HOW_TO_GET_CHECKPOINT)):
        if not found:
            st.error(f"No {what} found in `{where}`.")
            st.info(fix)
            st.stop()
    names = [p.name for p in datasets]
    data_path = datasets[names.index(st.sidebar.selectbox(
        "Dataset", names, index=names.index(SAMPLE_NAME) if SAMPLE_NAME in names else 0, key="dataset",
        bind="query-params", help=f"HDF5 files in {folder}"))]
    ckpt_names = [p.name for p in checkpoints]
    ckpt_path = checkpoints[ckpt_names.index(st.sidebar.selectbox(
        "Model", ckpt_names, key="model", bind="query-params",
        help=f"Checkpoints in {ckpt_folder}; the first is the default"))]
    try:
        challenge = False
        probe = _load_data(str(data_path), stamp(data_path), False)
        if probe.class_names == GALAXY10_SDSS_CLASSES:
            challenge = st.sidebar.toggle("Challenge subset (6 face-on classes)", value=True, key="challenge",
                                          help="Drop cigar-shaped and edge-on classes 3-6, as the Milky Way "
                                               "challenge does.")
        session = Session((str(data_path), stamp(data_path), challenge), (str(ckpt_path), stamp(ckpt_path)))
        session.checkpoint  # noqa: B018  (load now, so a broken file is reported here)
    except GalaxyVAEError as exc:
        st.error(error_text(exc))
        st.stop()
    st.sidebar.caption(f"{len(session.data):,} galaxies · {type(session.checkpoint.model).__name__} "
                       f"({session.checkpoint.model.latent_dim}-D latent)")
    st.session_state[SESSION_KEY] = session


def session() -> Session:
    """The Session the sidebar built in this run. None was built when a fresh server's first request
    was for a page (/latent_map): Streamlit then runs it in its pages-folder mode, skipping the entry
    file, until some run has called st.navigation. So remember where the visitor was going and switch
    to the entry file, whose st.navigation ends that mode; :func:`follow_deep_link` goes on."""
    if SESSION_KEY not in st.session_state:
        path = urlparse(st.context.url or "").path.strip("/")
        page = f"pages/{path.split('/')[-1]}.py" if path else None
        st.session_state[DEEP_LINK_KEY] = (page, {k: st.query_params.get_all(k) for k in st.query_params})
        st.switch_page(ENTRY_FILE)
    return st.session_state[SESSION_KEY]


def follow_deep_link() -> None:
    """In the entry file right after st.navigation: go on to the page a fresh server's first visitor
    asked for (see :func:`session`), with its query parameters, through the app's own navigation."""
    page, params = st.session_state.pop(DEEP_LINK_KEY, (None, None))
    if page in [p[0] for p in PAGES]:
        st.switch_page(page, query_params=params)


# --- model quality (pages/model_quality.py): evaluations, cached per file stamps ---------------

@st.cache_data(show_spinner="Evaluating every checkpoint on its held-out galaxies…", max_entries=4)
def _quality_table(data_key: tuple, ckpt_keys: tuple) -> tuple[list[dict], list[str]]:
    return _quality_rows([_load_checkpoint(*k) for k in ckpt_keys], _load_data(*data_key))


@st.cache_resource(show_spinner="Reconstructing held-out galaxies…", max_entries=8)
def _validation_examples(data_key: tuple, ckpt_key: tuple, per_class: int) -> list[ClassExamples]:
    return validation_examples(_load_checkpoint(*ckpt_key), _load_data(*data_key), per_class)


@st.cache_resource(show_spinner="Classifying held-out galaxies…", max_entries=8)
def _head_confusion(data_key: tuple, ckpt_key: tuple) -> np.ndarray | None:
    return head_confusion(_load_checkpoint(*ckpt_key), _load_data(*data_key))


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


def decoded_beside_nearest(session: Session, point, caption: str, columns: list) -> bytes:
    """A decoded latent point (``generate.LatentPoints`` of one) as crisp PNG in ``columns[0]``, the
    nearest real galaxy in ``columns[1]``; returns the PNG (for a download button)."""
    cat, data, row = session.catalogue, session.data, point.nearest[0]
    image = png_bytes(upscale(cat.decode(point.latents)[0], display_scale(cat.model.input_size)))
    columns[0].image(image, caption=caption, output_format="PNG")
    columns[1].image(session.thumbnail_png(row), output_format="PNG",  # already PNG: "auto" would re-encode
                     caption=f"Nearest real galaxy: {galaxy_caption(data, row, point.distances[0])}")
    return image


def catalogue_gallery(session: Session, rows: Sequence[int], captions: Sequence[str], columns: int = 6,
                      scale: int = 2) -> None:
    """Catalogue galaxies by row, from :meth:`Session.thumbnail_png` (each encoded once per server)."""
    gallery([session.thumbnail_png(r, scale) for r in rows], captions, columns)


def upload(label: str, key: str, session: Session, framing: bool = True, on_change=None) -> PreparedImage | None:
    """A galaxy picture from the user, prepared like the catalogue; errors shown, never raised."""
    file = st.file_uploader(label, type=UPLOAD_EXTENSIONS, key=key, on_change=on_change)
    if file is None:
        return None
    try:
        return _prepared_upload(file.file_id, session.target_extent if framing else None, file)
    except GalaxyVAEError as exc:
        st.error(error_text(exc))
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
    stamp (its stored cutout is read-only); errors shown, never raised."""
    try:
        return _prepared_file(str(path), stamp(Path(path)), session.target_extent if framing else None)
    except GalaxyVAEError as exc:
        st.error(error_text(exc))
        return None


def look_up(cat: Catalogue, prepared: PreparedImage, k: int = 12, invariant: bool = False) -> Query:
    """:meth:`Catalogue.look_up` of a prepared upload. The first call per model measures the
    catalogue's own reconstruction errors for the outlier check (seconds at the sample's size)."""
    with st.spinner("Measuring how the model sees its own catalogue (once per model)…"):
        return cat.look_up(prepared.stored, k, invariant)


def show_query(query: Query, prepared: PreparedImage, left, right) -> None:
    """A prepared upload as the model sees it (in ``left``) beside its reconstruction (``right``),
    then its preparation notes and, when it lies outside the catalogue, a warning."""
    left.image(upscale(model_view(prepared.stored), 3), caption="The query, prepared as the catalogue is")
    if query.reconstruction is not None:
        right.image(upscale(query.reconstruction, 3), caption="Its reconstruction by the model")
    if prepared.notes:
        st.caption(join_notes(prepared.notes))
    if query.outlier["outlier"]:
        st.warning(outlier_message(query.outlier))


@contextmanager
def guard():
    """Whatever goes wrong inside (a page run, a fragment), the visitor sees what to do and the
    traceback goes to the server log, never to the page. st.stop / st.rerun / st.switch_page pass
    through: they are not Exceptions."""
    try:
        yield
    except GalaxyVAEError as exc:  # input we could not use, said in the input's own terms
        st.error(error_text(exc))
    except Exception:
        log.exception("unexpected error while running a page")
        st.error(f"{UNEXPECTED}, and it is not your input's fault: the details went to the server log. "
                 "Try another picture or setting, or reload the page; if it happens again, please report it.")


def guarded(fn):
    """``fn`` run under :func:`guard`: for fragments, whose reruns run outside the page's own guard."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with guard():
            return fn(*args, **kwargs)
    return run
