"""Cached loaders and the :class:`Session`: datasets, models, catalogues (latents + neighbour index)
and the pictures drawn from them, built once per (file, modification time, size) with
``st.cache_resource`` and shared by every session and page; a rerun only looks them up.
Catalogues are opened from the store beside the dataset (:meth:`Catalogue.open`), so a restarted
server reads what an earlier one (or ``python -m galaxy_vae embed``) computed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from galaxy_vae.catalogue import Catalogue, ModelSpace, PixelSpace, Similarity
from galaxy_vae.checkpoints import Checkpoint, list_checkpoints, load_checkpoint
from galaxy_vae.configs import SIMILARITY_NAMES
from galaxy_vae.data import CROP, GalaxyData, model_view
from galaxy_vae.extent import catalogue_extent
from galaxy_vae.figures import LARGE_MAP, MAP_CELLS, MapLayers, large_map_layers
from galaxy_vae.generate import cell_sample_rows, latent_grid_points, map_extent, real_grid_rows
from galaxy_vae.hdf5 import open_for_search
from galaxy_vae.lookalikes import Ranking, make_similarity, rank_all, similarity_files
from galaxy_vae.paths import frames_dir, large_map_rows
from galaxy_vae.quality import ClassExamples, head_confusion, validation_examples
from galaxy_vae.quality import quality_table as _quality_rows
from galaxy_vae.quality import robustness_table as robustness_rows
from galaxy_vae.raster import data_uri, density_map, display_scale, png_bytes, raster_map, tile, upscale
from galaxy_vae.sky import catalogue_sky

BACKGROUND_GRID = 24  # decoded galaxies per side behind the latent map


def stamp(path: Path) -> tuple[int, int]:
    """(modification time in ns, size): part of every cache key, so a rebuilt file is re-read."""
    st_ = path.stat()
    return st_.st_mtime_ns, st_.st_size


# --- cached loaders (keyed by path strings and stamps: hashable, cheap) -------------------------

@st.cache_resource(show_spinner="Reading the galaxy catalogue…", max_entries=4)
def _load_data(path: str, stamp: tuple, challenge: bool) -> GalaxyData:
    return open_for_search(path, challenge, mapped=True)  # images paged in as looked at, not all resident


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _load_checkpoint(path: str, stamp: tuple) -> Checkpoint:
    return load_checkpoint(path)


@st.cache_resource(show_spinner="Encoding every galaxy…", max_entries=8)
def _model_catalogue(data_key: tuple, ckpt_key: tuple) -> Catalogue:
    return Catalogue.open(_load_data(*data_key), ModelSpace(_load_checkpoint(*ckpt_key)))


@st.cache_resource(show_spinner="Preparing the pixel baseline…", max_entries=2)
def _pixel_catalogue(data_key: tuple) -> Catalogue:
    return Catalogue.open(_load_data(*data_key), PixelSpace())


def _similarity(data_key: tuple, key: str, space_key: tuple | None) -> Similarity:
    """Similarity ``key`` over the catalogue of checkpoint ``space_key`` (None: raw pixels); only
    the catalogue behind it is built, and cached."""
    cat = _pixel_catalogue(data_key) if space_key is None else _model_catalogue(data_key, space_key)
    return make_similarity(key, cat)


@st.cache_resource(show_spinner="Ranking the catalogue…", max_entries=16)
def _ranking(data_key: tuple, spaces: tuple, query_sha1: str, _query: np.ndarray) -> Ranking:
    return rank_all(_query, [_similarity(data_key, key, space) for key, space in spaces])


@st.cache_resource(max_entries=4)
def _target_extent(data_key: tuple) -> float:
    return catalogue_extent(_load_data(*data_key).images)


@st.cache_resource(max_entries=4)
def _sky_level(data_key: tuple) -> tuple[float, float, float]:
    return tuple(float(v) for v in catalogue_sky(_load_data(*data_key).images))


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


@st.cache_resource(show_spinner="Placing real galaxies on the map…", max_entries=8)
def _real_background(data_key: tuple, ckpt_key: tuple) -> tuple[str, tuple]:
    """The map's mosaic of real galaxies: in each cell of a 24 x 24 grid the catalogue galaxy nearest
    its centre (empty cells black), as a JPEG data URI with its extent."""
    cat = _model_catalogue(data_key, ckpt_key)
    extent = map_extent(cat.map_xy)
    rows = real_grid_rows(cat.map_xy, extent, BACKGROUND_GRID)
    cells = np.zeros((len(rows), CROP, CROP, 3), dtype=np.uint8)
    cells[rows >= 0] = model_view(cat.data.images[rows[rows >= 0]])
    return data_uri(tile(cells, BACKGROUND_GRID), "JPEG"), extent


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


@st.cache_resource(show_spinner="Drawing the map's density…", max_entries=4)
def _map_layers(data_key: tuple, ckpt_key: tuple) -> MapLayers:
    """A large catalogue's map layers (:class:`figures.MapLayers`), built once: the density of every
    galaxy as a PNG, and as points one galaxy of each occupied cell of a MAP_CELLS grid."""
    cat = _model_catalogue(data_key, ckpt_key)
    extent = map_extent(cat.map_xy)
    rows = cell_sample_rows(cat.map_xy, extent, MAP_CELLS)
    density = data_uri(density_map(cat.map_xy, cat.data.labels, cat.data.class_names, extent))
    return large_map_layers(cat.map_xy, cat.data.labels, cat.data.class_names, rows, density, extent)


def _key(path: Path | None) -> tuple | None:
    return (str(path), stamp(path)) if path else None


@dataclass(frozen=True)
class Session:
    """What the sidebar selected: a dataset, a (generative) model and a similarity, with cached
    views of them. The map and the generator are the model's; every neighbour search is the
    similarity's."""

    data_key: tuple  # (path, stamp, challenge subset?)
    ckpt_key: tuple  # (path, stamp)
    similarity_name: str | None = None  # a Similarity.name; None: the first (the default)

    @property
    def data(self) -> GalaxyData:
        return _load_data(*self.data_key)

    @property
    def checkpoint(self) -> Checkpoint:
        return _load_checkpoint(*self.ckpt_key)

    @property
    def catalogue(self) -> Catalogue:
        return _model_catalogue(self.data_key, self.ckpt_key)

    @property
    def spaces(self) -> tuple[tuple[str, tuple | None], ...]:
        """(similarity key, the checkpoint whose space it searches (None: pixels)) for every
        similarity on offer (:func:`lookalikes.similarity_files`), without building anything."""
        return tuple((key, _key(path)) for key, path in similarity_files(Path(self.ckpt_key[0])).items())

    def similarity_names(self) -> list[str]:
        return [SIMILARITY_NAMES[key] for key, _ in self.spaces]

    @property
    def similarity(self) -> Similarity:
        """The similarity every neighbour search uses (the sidebar's choice; the default first)."""
        spaces = dict(self.spaces)
        key = next((k for k in spaces if SIMILARITY_NAMES[k] == self.similarity_name), next(iter(spaces)))
        return _similarity(self.data_key, key, spaces[key])

    def similarities(self) -> list[Similarity]:
        """Every similarity on offer (builds each one's catalogue)."""
        return [_similarity(self.data_key, key, space) for key, space in self.spaces]

    def milky_way_ranking(self, query: np.ndarray) -> Ranking:
        """The catalogue ranked for ``query`` (a stored cutout) under every similarity, cached per
        query, so moving the lookalikes' sliders does not re-rank it."""
        query = np.ascontiguousarray(query)
        return _ranking(self.data_key, self.spaces, hashlib.sha1(query.tobytes()).hexdigest(), query)

    def manifold(self, n: int) -> tuple[np.ndarray, tuple, bytes]:
        """Decoded n x n grid over the map: (mosaic uint8, extent (x0, x1, y0, y1), PNG as displayed)."""
        return _manifold(self.data_key, self.ckpt_key, n)

    def map_background(self, real: bool = False) -> tuple[str, tuple]:
        """The latent map's optional background, decoded galaxies or (``real``) catalogue galaxies
        placed by the map: (image data URI, extent)."""
        return (_real_background if real else _map_background)(self.data_key, self.ckpt_key)

    def map_layers(self) -> MapLayers | None:
        """A large catalogue's map layers, cached (pass them to ``latent_map(..., layers=)``); None
        at or below the large-map size ($GALAXY_VAE_LARGE_MAP, else figures.LARGE_MAP), where every
        galaxy is a point with its id in the hover."""
        if len(self.data) <= large_map_rows(LARGE_MAP):
            return None
        return _map_layers(self.data_key, self.ckpt_key)

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

    @property
    def sky_level(self) -> tuple[float, float, float]:
        """The catalogue's typical sky (R, G, B): uploads' sky is matched to it."""
        return _sky_level(self.data_key)

    def quality_table(self) -> tuple[list[dict], list[str]]:
        """(rows, problems) of :func:`quality.quality_table` for every checkpoint in the checkpoints
        folder on this dataset; recomputed only when a file changes."""
        return _quality_table(self.data_key, tuple((str(p), stamp(p)) for p in list_checkpoints()))

    def robustness_table(self, measure: bool) -> tuple[list[dict], list[str]] | None:
        """(rows, problems) of :func:`quality.robustness_table` for every checkpoint on this dataset,
        measured when ``measure`` (then kept per file stamps); None while not yet measured."""
        frames = frames_dir()
        key = (self.data_key, tuple((str(p), stamp(p)) for p in list_checkpoints()), str(frames) if frames else None)
        if measure:
            _MEASURED.add(key)
        return _robustness_table(*key) if key in _MEASURED else None

    def realism(self, measure: bool) -> tuple[dict, dict] | None:
        """(report, {set: {stat: values}}) of :func:`realism_model.realism_of` for this checkpoint on this
        dataset, measured when ``measure`` (then kept per file stamps); None while not yet measured."""
        key = (self.data_key, self.ckpt_key)
        if measure:
            _MEASURED.add(("realism",) + key)
        return _realism(*key) if ("realism",) + key in _MEASURED else None

    def validation_examples(self, per_class: int = 3) -> list[ClassExamples]:
        """A few held-out galaxies per class beside this checkpoint's reconstructions."""
        return _validation_examples(self.data_key, self.ckpt_key, per_class)

    def confusion(self) -> np.ndarray | None:
        """This checkpoint's class-head confusion matrix on its validation split (None: no head)."""
        return _head_confusion(self.data_key, self.ckpt_key)


# --- model quality (pages/model_quality.py): evaluations, cached per file stamps ---------------

@st.cache_data(show_spinner="Evaluating every checkpoint on its held-out galaxies…", max_entries=4)
def _quality_table(data_key: tuple, ckpt_keys: tuple) -> tuple[list[dict], list[str]]:
    return _quality_rows([_load_checkpoint(*k) for k in ckpt_keys], _load_data(*data_key))


_MEASURED: set[tuple] = set()  # robustness tables someone asked for on this server (cached below)


@st.cache_data(show_spinner="Re-cutting held-out galaxies from their raw frames and scoring every checkpoint "
                            "(about a minute, once per dataset)…", max_entries=4)
def _robustness_table(data_key: tuple, ckpt_keys: tuple, frames: str | None) -> tuple[list[dict], list[str]]:
    return robustness_rows([_load_checkpoint(*k) for k in ckpt_keys], _load_data(*data_key),
                           Path(frames) if frames else None)


REALISM_N = 200  # validation galaxies the page measures (the CLI's default is 300)


@st.cache_data(show_spinner="Measuring statmorph morphology of real, reconstructed and sampled galaxies "
                            "(about a minute per checkpoint)…", max_entries=8)
def _realism(data_key: tuple, ckpt_key: tuple) -> tuple[dict, dict]:
    from galaxy_vae.realism import histogram_values  # statmorph and photutils: the model page's only
    from galaxy_vae.realism_model import realism_of
    report, ms = realism_of(_load_checkpoint(*ckpt_key), _load_data(*data_key), REALISM_N, processes=2)
    return report, histogram_values(ms)


@st.cache_resource(show_spinner="Reconstructing held-out galaxies…", max_entries=8)
def _validation_examples(data_key: tuple, ckpt_key: tuple, per_class: int) -> list[ClassExamples]:
    return validation_examples(_load_checkpoint(*ckpt_key), _load_data(*data_key), per_class)


@st.cache_resource(show_spinner="Classifying held-out galaxies…", max_entries=8)
def _head_confusion(data_key: tuple, ckpt_key: tuple) -> np.ndarray | None:
    return head_confusion(_load_checkpoint(*ckpt_key), _load_data(*data_key))


