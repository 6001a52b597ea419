"""How well a similarity survives the ways an upload differs from the catalogue.

Queries are the validation galaxies re-cut from their raw 423 px frames as a user's own cutout
might be, at the frame's own resolution, then prepared exactly as the app prepares an upload
(:func:`galaxy_vae.cutouts.cutout_of`):

    standard   the catalogue's field of view (207 px of the 424 px Galaxy Zoo frame)
    fov_F      the central F px instead, F in 50, 100, 150, 300, 423 (zoomed in to out)
    sky        the standard field with a brighter, stretched sky: clip((x + 20) * 1.3)
    rotated    the frame turned by a random angle (seeded) about its centre, standard field

Each variant's figure is the macro precision@10 (per class, the mean share of a query's 10 nearest
*training* galaxies -- standard-framed, as the catalogue stores them -- that share its class; then
the mean over classes), with the six classes kept apart. The pixel baseline is measured the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from galaxy_vae.cutouts import cutout_of
from galaxy_vae.data import CROP, GalaxyData, stratified_split
from galaxy_vae.embed import encode_images
from galaxy_vae.evaluate import K, precision_of
from galaxy_vae.frames import RAW, frames_present, read_frame
from galaxy_vae.search import knn, pixel_features
from galaxy_vae.sky import catalogue_sky

log = logging.getLogger(__name__)

FIELDS = {"standard": 207, "fov_50": 50, "fov_100": 100, "fov_150": 150, "fov_300": 300, "fov_423": 423}
VARIANTS = (*FIELDS, "sky", "rotated")
ROTATION_SEED = 12345
SKY_OFFSET, SKY_GAIN = 20, 1.3  # the sky variant: clip((x + 20) * 1.3) on 0-255 values

Embed = Callable[[np.ndarray], np.ndarray]  # (N, 69, 69, 3) uint8 -> (N, d) float


def field_cut(frame: Image.Image, field: float) -> Image.Image:
    """The central ``field`` px (Galaxy Zoo's 424 px convention) of a raw frame, at its resolution."""
    side = field * RAW / 424
    lo = (RAW - side) / 2
    return frame.resize((round(side), round(side)), Image.Resampling.BOX, box=(lo, lo, lo + side, lo + side))


def variant_pictures(frame: Image.Image, angle: float) -> dict[str, Image.Image]:
    """Every variant of one galaxy as the picture a user would upload."""
    out = {name: field_cut(frame, field) for name, field in FIELDS.items()}
    standard = np.asarray(out["standard"], dtype=np.float64)
    out["sky"] = Image.fromarray(np.clip(np.rint((standard + SKY_OFFSET) * SKY_GAIN), 0, 255).astype(np.uint8))
    out["rotated"] = field_cut(frame.rotate(angle, resample=Image.Resampling.BICUBIC), FIELDS["standard"])
    return out


def _galaxy_cutouts(job: tuple) -> dict[str, np.ndarray]:
    """(In a worker.) Every variant of one galaxy, prepared as an upload."""
    frames, obj_id, angle, framing, sky, target = job
    return {v: cutout_of(picture, framing=framing, target_fraction=target, sky=sky)[0]
            for v, picture in variant_pictures(read_frame(frames, obj_id), angle).items()}


def query_cutouts(ids, frames: Path, framing: str = "none", sky=None, target_fraction: float | None = None,
                  progress: bool = False, workers: int = 2) -> dict[str, np.ndarray]:
    """{variant: (Q, 69, 69, 3) uint8} for the galaxies ``ids``, each prepared as an upload."""
    angles = np.random.default_rng(ROTATION_SEED).uniform(0, 360, len(ids))
    sky = None if sky is None else tuple(float(v) for v in sky)
    jobs = [(Path(frames), str(i), float(a), framing, sky, target_fraction) for i, a in zip(ids, angles)]
    out = {v: np.empty((len(ids), 69, 69, 3), dtype=np.uint8) for v in VARIANTS}
    with ProcessPoolExecutor(workers) if workers > 1 and len(jobs) > 32 else nullcontext() as pool:
        done = pool.map(_galaxy_cutouts, jobs, chunksize=16) if pool else map(_galaxy_cutouts, jobs)
        for q, cutouts in enumerate(tqdm(done, total=len(jobs), desc="re-cutting queries from raw frames",
                                         unit="galaxy", disable=not progress)):
            for v, cutout in cutouts.items():
                out[v][q] = cutout
    return out


def precision_by_variant(embed: Embed, base: np.ndarray, base_y: np.ndarray, queries: dict[str, np.ndarray],
                         query_y: np.ndarray, k: int = K) -> dict[str, float]:
    """Macro precision@k of each variant's queries against the ``base`` galaxies (exact search)."""
    base_z = embed(base)
    return {v: precision_of(knn(embed(q), base_z, k)[1], query_y, base_y)[1] for v, q in queries.items()}


def model_embedding(model: nn.Module) -> Embed:
    return lambda images: encode_images(model, images)


def pixel_embedding(images: np.ndarray) -> np.ndarray:
    return pixel_features(images, CROP)


@dataclass(frozen=True)
class QuerySet:
    """One split's queries, every variant prepared as an upload, and the catalogue they search."""

    base: np.ndarray  # (N, 69, 69, 3) uint8: the training galaxies, standard-framed
    base_y: np.ndarray  # (N,)
    queries: dict[str, np.ndarray]  # variant -> (Q, 69, 69, 3) uint8
    query_y: np.ndarray  # (Q,)
    missing_frames: int  # validation galaxies left out for want of a raw frame
    preparation: dict  # {"framing": ..., "sky_matched": ...}

    def score(self, embed: Embed) -> dict[str, float]:
        return precision_by_variant(embed, self.base, self.base_y, self.queries, self.query_y)

    def summary(self) -> dict:
        return {"robustness_queries": int(len(self.query_y)), "robustness_missing_frames": self.missing_frames,
                "robustness_preparation": self.preparation}


def query_set(data: GalaxyData, frames: Path | None, split_seed: int = 0, val_fraction: float = 0.2,
              framing: str = "none", match_sky: bool = True, target_fraction: float | None = None,
              progress: bool = False) -> QuerySet | str:
    """The :class:`QuerySet` of ``data``'s validation split, or why there is none (no raw frames).
    Galaxies without a frame in ``frames`` are left out, and counted."""
    train_idx, val_idx = stratified_split(data.labels, val_fraction, split_seed)
    have = frames_present(frames, np.asarray(data.ids)[val_idx])
    if not have.any():
        return (f"no raw frames for the validation galaxies of {data.name} in {frames}" if frames else
                "no folder of raw frames (set $GALAXY_VAE_FRAMES or pass --frames)")
    val_idx, base = val_idx[have], data.images[train_idx]
    sky = catalogue_sky(base) if match_sky else None
    queries = query_cutouts(np.asarray(data.ids)[val_idx], frames, framing, sky, target_fraction, progress)
    return QuerySet(base, data.labels[train_idx], queries, data.labels[val_idx], int((~have).sum()),
                    {"framing": framing, "sky_matched": match_sky})


def robustness_report(model: nn.Module | None, data: GalaxyData, frames: Path | None, split_seed: int = 0,
                      val_fraction: float = 0.2, framing: str = "none", match_sky: bool = True,
                      target_fraction: float | None = None, pixel: bool = True, progress: bool = False) -> dict:
    """``{"robustness": {variant: x}, "pixel_robustness": {...}, "robustness_queries": n, ...}`` for
    ``model`` (None: the pixel baseline alone) on the validation split of ``data``; without raw
    frames ``{"robustness": None, "robustness_skipped": why}``: never a made-up figure."""
    qs = query_set(data, frames, split_seed, val_fraction, framing, match_sky, target_fraction, progress)
    if isinstance(qs, str):
        log.warning("robustness skipped: %s", qs)
        return {"robustness": None, "robustness_skipped": qs}
    out = qs.summary()
    if model is not None:
        out["robustness"] = qs.score(model_embedding(model))
    if pixel:
        out["pixel_robustness"] = qs.score(pixel_embedding)
    return out


def ratios(figures: dict[str, float]) -> dict[str, float]:
    """Each variant's figure over the standard one (the issue's yardstick: >= 0.95x, fov_50 >= 0.8x)."""
    return {v: x / figures["standard"] for v, x in figures.items()} if figures.get("standard") else {}
