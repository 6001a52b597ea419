"""A searchable catalogue: one dataset seen through one similarity (a model's latent, or pixels).

This is what the pages and the CLI share, so both give identical answers for the same inputs:

    GalaxyData --space.embed--> vectors (N, d) --NeighbourIndex--> k nearest, distances
                                      |
                        Projection (2-D map coordinates; PCA when d > 2)

A *space* turns uint8 cutouts (N, 69, 69, 3) into vectors: :class:`ModelSpace` (latent means of a
checkpoint's model) or :class:`PixelSpace` (the raw 64x64 crop, the baseline). The
rotation/flip-invariant query embeds the 8 dihedral views of the query and keeps each galaxy's
best distance.

An upload is looked up once (:meth:`Catalogue.look_up`): one embedding (or one batch of its 8
views) serves its neighbours, its map point, its reconstruction and whether it lies outside the
catalogue -- the :class:`Query` the pages and the CLI show.

Everything a catalogue derives from (checkpoint, dataset) -- the vectors, the projection, the
reconstruction errors, the outlier thresholds, the neighbour distances, the vector index -- is
computed at most once when the catalogue has a :class:`~galaxy_vae.store.CatalogueStore`
(:meth:`Catalogue.open` finds the one beside the dataset file): each is read from the store when
it holds it, else computed when first needed and written there. :meth:`Catalogue.persist_all` (the
``embed`` command) computes all of them up front.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from galaxy_vae.checkpoints import Checkpoint
from galaxy_vae.data import GalaxyData
from galaxy_vae.embed import (
    decode_latents,
    encode_detail_images,
    encode_images,
    has_detail,
    recon_errors,
    reconstruct_from,
)
from galaxy_vae.search import NeighbourIndex, Neighbours, PixelIndex, PixelRows, pixel_features
from galaxy_vae.store import CatalogueStore, rows_key
from galaxy_vae.symmetry import dihedral_views

log = logging.getLogger(__name__)

OUTLIER_PERCENTILE = 99.0  # an upload beyond the catalogue's 99th percentile is flagged
ROWS_PER_QUERY = 4096  # catalogue galaxies looked up together by query_rows


@dataclass(frozen=True, eq=False)
class ModelSpace:
    """Latent means of a checkpoint's model."""

    checkpoint: Checkpoint

    @property
    def store_name(self) -> str:
        return Path(self.checkpoint.path).stem if self.checkpoint.path is not None else "model"

    @property
    def source(self) -> Path | None:
        """The checkpoint file this space is computed from (None: a model only in memory)."""
        path = self.checkpoint.path
        return Path(path) if path is not None and Path(path).is_file() else None

    @property
    def label(self) -> str:
        dim = self.checkpoint.model.latent_dim
        if self.checkpoint.name == "similarity":  # it has no latent to decode: an embedding only
            return f"galaxy encoder embedding ({dim}-D)"
        return f"{type(self.checkpoint.model).__name__} latent ({dim}-D)"

    def embed(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        return encode_images(self.checkpoint.model, images, progress=progress)


@dataclass(frozen=True, eq=False)
class PixelSpace:
    """The 64x64 crop itself, flattened: the baseline every latent must beat."""

    label: str = "pixels (64x64x3)"
    store_name = "pixels"
    source = None  # pixels come from the dataset alone

    def embed(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        return pixel_features(images)


@dataclass(frozen=True)
class Projection:
    """Affine map between the latent space and the 2-D map: z = center + xy @ axes.

    For a 2-D latent it is the identity, so the map *is* the latent. For wider latents (the 64-D
    autoencoder) the axes are the two principal directions of the catalogue's latents.
    """

    center: np.ndarray  # (d,)
    axes: np.ndarray  # (2, d), orthonormal rows

    @classmethod
    def fit(cls, vectors: np.ndarray) -> Projection:
        d = vectors.shape[1]
        if d == 2:
            return cls(np.zeros(2), np.eye(2))
        center = vectors.mean(axis=0).astype(np.float64)
        # principal directions from the SVD of the centred latents
        _, _, vt = np.linalg.svd(vectors.astype(np.float64) - center, full_matrices=False)
        return cls(center, vt[:2])

    def to_map(self, z: np.ndarray) -> np.ndarray:
        """(..., d) -> (..., 2)"""
        return (np.asarray(z, dtype=np.float64) - self.center) @ self.axes.T

    def to_latent(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) -> (..., d) float32, on the plane through the centre spanned by the axes."""
        return (self.center + np.asarray(xy, dtype=np.float64) @ self.axes).astype(np.float32)


@dataclass(frozen=True)
class Query:
    """One cutout looked up in a catalogue: everything a page or the CLI shows of it."""

    vector: np.ndarray  # (d,) its embedding (the latent mean), as it is (no rotation)
    xy: np.ndarray | None  # (2,) its point on the map; None in a pixel catalogue (never the map)
    neighbours: Neighbours  # (1, k) nearest catalogue galaxies (best over the 8 views if invariant)
    reconstruction: np.ndarray | None  # (64, 64, 3) uint8; None in a space without a decoder
    outlier: dict  # Catalogue.outlier_report's keys


class Catalogue:
    """``data`` embedded in ``space`` with an exact neighbour index. Build once, query often."""

    def __init__(self, data: GalaxyData, space: ModelSpace | PixelSpace, progress: bool = False,
                 store: CatalogueStore | None = None):
        self.data, self.space, self.store = data, space, store
        if isinstance(space, PixelSpace):  # pixels made from the uint8 images when needed, never all at once
            self.vectors = PixelRows(data.images)
            norms = self._derived("pixel_norms", lambda: PixelIndex(data.images).squared_norms)
            self.index = PixelIndex(data.images, norms)
        else:
            self.vectors = self._derived("vectors", lambda: space.embed(data.images, progress=progress))  # (N, d)
            self.index = NeighbourIndex(self.vectors, saved=self.store.file("index") if self.store else None)
        if self.store is not None and self.index.saved_path is None and self.index.savable:
            self.store.save_file("index", ".faiss", self.index.save)
        self._kth: dict[int, np.ndarray] = {}

    @classmethod
    def open(cls, data: GalaxyData, space: ModelSpace | PixelSpace, progress: bool = False) -> Catalogue:
        """The catalogue of ``data`` in ``space``, backed by the store beside the dataset file
        (:func:`store_for`; in memory only for data or models that are not files)."""
        return cls(data, space, progress, store_for(data, space))

    def _derived(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Array ``name``: from the store when it holds it intact, else computed (and stored)."""
        if self.store is None:
            return compute()
        found = self.store.array(name)
        if found is None:
            found = compute()
            self.store.save_array(name, found)
        return found

    def _derived_value(self, name: str, compute: Callable[[], float]) -> float:
        found = None if self.store is None else self.store.value(name)
        if not isinstance(found, (int, float)):
            found = float(compute())
            if self.store is not None:
                self.store.save_value(name, found)
        return float(found)

    def persist_all(self, progress: bool = False) -> list[str]:
        """Compute everything derived (what the pages and the CLI may ask for) now, so that the
        store holds it; returns the names computed or read, in order."""
        steps: list[tuple[str, Callable]] = [("outlier threshold", lambda: self.nn_distance_threshold),
                                             ("10th-neighbour distances", lambda: self.neighbour_distance(10))]
        if not isinstance(self.space, PixelSpace):  # pixels are never a map: no projection of 12,288-D rows
            steps.insert(0, ("projection", lambda: self.projection))
        if self.decodes:
            steps.append(("reconstruction errors", lambda: self.recon_error_threshold))
        bar = tqdm(steps, desc="catalogue", unit="step", disable=not progress)
        for name, step in bar:
            bar.set_postfix_str(name)
            step()
        return ["vectors", "index"] + [name for name, _ in steps]

    def __len__(self) -> int:
        return len(self.data)

    @property
    def axis_names(self) -> tuple[str, str]:
        """Titles of the map's axes: the latent's own two, or a wider latent's principal directions."""
        return ("z₁", "z₂") if self.vectors.shape[1] == 2 else ("PC 1", "PC 2")

    @property
    def model(self):
        return self.space.checkpoint.model if isinstance(self.space, ModelSpace) else None

    @property
    def decodes(self) -> bool:
        """Whether this space has a decoder (generative models: yes; pixels, the similarity encoder: no)."""
        return self.model is not None and hasattr(self.model, "decode")

    # --- queries ------------------------------------------------------------------------------

    def embed_views(self, images: np.ndarray) -> np.ndarray:
        """Vectors of the 8 dihedral views of each image: (Q, 69, 69, 3) -> (Q, 8, d)."""
        views = dihedral_views(np.asarray(images))  # (8, Q, H, W, 3)
        flat = views.reshape((-1,) + views.shape[2:])
        return self.space.embed(flat).reshape(8, len(images), -1).transpose(1, 0, 2)

    def query_images(self, images: np.ndarray, k: int = 12, invariant: bool = False) -> Neighbours:
        """Neighbours of uint8 cutouts (Q, 69, 69, 3) or one (69, 69, 3): Neighbours with (Q, k)."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if invariant:
            return self.index.query_views(self.embed_views(images), k)
        return self.index.query(self.space.embed(images), k)

    def query_rows(self, rows, k: int = 12, invariant: bool = False) -> Neighbours:
        """Neighbours of catalogue galaxies ``rows``, each excluding itself."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        if len(rows) > ROWS_PER_QUERY:  # every galaxy (the outlier thresholds): in blocks, memory bounded
            parts = [self.query_rows(rows[s:s + ROWS_PER_QUERY], k, invariant)
                     for s in range(0, len(rows), ROWS_PER_QUERY)]
            return Neighbours(np.concatenate([p.distances for p in parts]), np.concatenate([p.indices for p in parts]))
        k_eff = min(k, len(self) - 1)
        if invariant:
            found = self.index.query_views(self.embed_views(self.data.images[rows]), k_eff + 1)
        else:
            found = self.index.query(self.vectors[rows], k_eff + 1)
        dist, idx = [], []
        for row, d, i in zip(rows, found.distances, found.indices):
            keep = i != row
            if keep.all():  # a duplicate tied with the row itself took its place: drop the farthest
                keep[-1] = False
            dist.append(d[keep][:k_eff])
            idx.append(i[keep][:k_eff])
        return Neighbours(np.asarray(dist), np.asarray(idx))

    # --- the latent map -----------------------------------------------------------------------

    @cached_property
    def projection(self) -> Projection:
        if self.store is None:
            return Projection.fit(self.vectors)
        center, axes = self.store.array("projection_center"), self.store.array("projection_axes")
        if center is None or axes is None:
            fitted = Projection.fit(self.vectors)
            self.store.save_array("projection_center", fitted.center)
            self.store.save_array("projection_axes", fitted.axes)
            return fitted
        return Projection(center, axes)

    @cached_property
    def map_xy(self) -> np.ndarray:
        """(N, 2) map coordinates of every galaxy."""
        return self.projection.to_map(self.vectors)

    @property
    def has_detail(self) -> bool:
        """Whether the model has a detail code beside the map latent (the detail VAE)."""
        return has_detail(self.model)

    @cached_property
    def details(self) -> np.ndarray | None:
        """(N, D) every galaxy's detail code (posterior mean); None for models without one."""
        return encode_detail_images(self.model, self.data.images) if self.has_detail else None

    def decode(self, z: np.ndarray, details: np.ndarray | None = None) -> np.ndarray:
        """Images decoded from latents (Q, d), with ``details`` (Q, D) when the model has a detail
        code (None: each point's typical details): uint8 (Q, S, S, 3) at the model's size."""
        if not self.decodes:
            raise TypeError(f"{self.space.label} has no decoder")
        return decode_latents(self.model, z, details=details if self.has_detail else None)

    # --- is a query like the catalogue? -------------------------------------------------------

    @cached_property
    def nn_distance_threshold(self) -> float:
        """99th percentile of catalogue galaxies' distance to their nearest other galaxy."""
        def compute() -> float:
            d = self.query_rows(np.arange(len(self)), k=1).distances[:, 0]
            return float(np.percentile(d, OUTLIER_PERCENTILE))
        return self._derived_value("nn_distance_threshold", compute)

    @cached_property
    def recon_errors(self) -> np.ndarray:
        """(N,) each galaxy's reconstruction error (MSE at 64x64); models with a decoder only."""
        return self._derived("recon_errors", lambda: recon_errors(self.model, self.data.images))

    @cached_property
    def recon_error_threshold(self) -> float:
        """99th percentile of the catalogue's per-galaxy reconstruction error (MSE at 64x64)."""
        return self._derived_value("recon_error_threshold",
                                   lambda: np.percentile(self.recon_errors, OUTLIER_PERCENTILE))

    def outlier_report(self, nn_distance: float, recon_error: float | None = None) -> dict:
        """How far a cutout lies from the catalogue, against the catalogue's 99th percentiles:
        its distance to the nearest galaxy and (models with a decoder) its reconstruction error."""
        report = {"nn_distance": float(nn_distance), "nn_threshold": self.nn_distance_threshold}
        if recon_error is not None:
            report.update(recon_error=float(recon_error), recon_threshold=self.recon_error_threshold)
        report["outlier"] = report["nn_distance"] > report["nn_threshold"] or (
            report.get("recon_error", 0.0) > report.get("recon_threshold", np.inf))
        return report

    def look_up(self, image: np.ndarray, k: int = 12, invariant: bool = False) -> Query:
        """One cutout (69, 69, 3): embedded once (its 8 views in one batch when ``invariant``),
        and that embedding serves the neighbours, the map point, the reconstruction and the
        outlier report."""
        image = np.asarray(image)
        if invariant:
            views = self.embed_views(image[None])[0]  # (8, d); view 0 is the cutout as it is
            vector, neighbours = views[0], self.index.query_views(views, k)
            nearest = float(self.index.query(vector, 1).distances[0, 0])
        else:
            vector = self.space.embed(image[None])[0]  # (d,)
            neighbours = self.index.query(vector, k)
            nearest = float(neighbours.distances[0, 0])
        recon = err = None
        if self.decodes:
            recons, errs = reconstruct_from(self.model, vector[None], image[None])
            recon, err = recons[0], float(errs[0])
        # a pixel catalogue is never the map (it keeps no float copy to fit one on): no map point
        xy = None if isinstance(self.vectors, PixelRows) else self.projection.to_map(vector)
        return Query(vector, xy, neighbours, recon, self.outlier_report(nearest, err))

    def neighbour_distance(self, k: int = 10) -> np.ndarray:
        """(N,) each galaxy's distance to its k-th nearest other galaxy (cached per k): how alone
        it is in this space, the anomaly score of representation-based searches."""
        if k not in self._kth:
            self._kth[k] = self._derived(f"kth_{k}", lambda: self.query_rows(np.arange(len(self)), k).distances[:, -1])
        return self._kth[k]


def store_for(data: GalaxyData, space: ModelSpace | PixelSpace) -> CatalogueStore | None:
    """The store beside ``data``'s file for ``space`` (None when the data or the model is not a
    file, or the dataset's folder cannot be written), checked against both files."""
    if data.path is None or not Path(data.path).is_file():
        return None
    if isinstance(space, ModelSpace) and space.source is None:
        return None
    rows = rows_key(data.ids, data.labels, data.class_names)
    return CatalogueStore.beside(Path(data.path), space.source, space.store_name, rows)


@dataclass(frozen=True, eq=False)
class Similarity:
    """One way of comparing galaxies: a catalogue's space, optionally over all 8 dihedral views."""

    key: str  # short name in CSV files and code: encoder, latent, dense_ae, invariant, pixels
    name: str  # for people, and in the URL: "galaxy encoder", "model latent", ...
    label: str  # the space itself, e.g. "GalaxyVAE latent (2-D)"
    catalogue: Catalogue
    invariant: bool = False

    def look_up(self, image: np.ndarray, k: int = 12) -> Query:
        """:meth:`Catalogue.look_up` of one cutout in this similarity."""
        return self.catalogue.look_up(image, k, self.invariant)

    def of_rows(self, rows, k: int = 12) -> Neighbours:
        """Neighbours of catalogue galaxies ``rows`` (Q, k), each excluding itself."""
        return self.catalogue.query_rows(rows, k, self.invariant)

    def like(self, rows, k: int = 12) -> Neighbours:
        """"More like these": the k galaxies nearest the mean embedding of ``rows``, none of them
        among ``rows`` (1, k)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        k = min(k, len(self.catalogue) - len(rows))
        found = self.catalogue.index.query(self.catalogue.vectors[rows].mean(axis=0), k + len(rows))
        keep = ~np.isin(found.indices[0], rows)
        return Neighbours(found.distances[:, keep][:, :k], found.indices[:, keep][:, :k])
