"""Cutting galaxies out of decoded pictures exactly as the catalogue was stored.

Catalogue images and user uploads go through the same functions, so an uploaded picture is
prepared exactly as the catalogue was:

    RGB picture  --galaxy10_cutout--> (69, 69, 3) uint8   # Galaxy Zoo frame: central 207/424
                 --square_cutout----> (69, 69, 3) uint8   # any other picture: centre square
    upload       --prepare_upload---> PreparedImage: decoded (galaxy_vae.images.read_image), then
                                      cutout_of: optionally framed like the catalogue
                                      (galaxy_vae.framing), square_cutout, and its sky matched to
                                      the catalogue's (galaxy_vae.sky)

The stored size (69) matches Galaxy10 SDSS; models then take the central 64x64
(:func:`galaxy_vae.data.model_view`).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from galaxy_vae.extent import CATALOGUE_EXTENT
from galaxy_vae.framing import Framing, frame_to
from galaxy_vae.images import RESAMPLE, STORED_SIZE, Source, read_image
from galaxy_vae.sky import CATALOGUE_SKY, border_sky, match_sky

GZ_CROP_FRACTION = 207 / 424  # Galaxy10 keeps the central 207 px of the 424 px Galaxy Zoo frame
WORK_SIDE = 1024  # px: uploads are box-reduced (by whole factors) until their shorter side is near this
DISPLAY_SIDE = 384  # px: the copies of an upload kept for display after preparation
BIG_PICTURE = 4_000_000  # pixels: after preparing a picture this large, freed memory goes back to the OS


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """An upload prepared exactly as catalogue images are stored. Only small arrays are kept (a
    prepared upload is cached): the stored cutout and two display copies."""

    stored: np.ndarray  # (69, 69, 3) uint8, read-only; models crop their view from it
    picture: np.ndarray  # (h, w, 3) uint8: the picture as read, at most DISPLAY_SIDE a side
    framed: np.ndarray | None  # the same of the framed square; None without framing
    original_size: tuple[int, int]  # (width, height) in the file
    notes: tuple[str, ...]  # what decoding and framing did, for the user
    framing: Framing | None  # extents before/after (its image a display copy); None with framing="none"


def _square_box(width: int, height: int, fraction: float) -> tuple[float, float, float, float]:
    """The centred square covering ``fraction`` of the shorter side, as a float PIL box."""
    side = min(width, height) * fraction
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def square_cutout(img: Image.Image, size: int = STORED_SIZE, fraction: float = 1.0) -> np.ndarray:
    """Centre square of ``img`` (``fraction`` of its shorter side) resampled to ``size`` x ``size``.

    Returns (size, size, 3) uint8. Sub-pixel boxes are honoured, so a 207/424 crop of a 423 px
    frame is exact rather than rounded.
    """
    box = _square_box(img.width, img.height, fraction)
    out = img.convert("RGB").resize((size, size), RESAMPLE, box=box)
    return np.asarray(out, dtype=np.uint8)


def galaxy10_cutout(img: Image.Image, size: int = STORED_SIZE) -> np.ndarray:
    """The Galaxy10 recipe for a Galaxy Zoo frame: keep the central 207/424, downscale to 69x69."""
    return square_cutout(img, size, GZ_CROP_FRACTION)


def release_freed_memory() -> None:
    """Hand memory freed by a large decode back to the operating system. glibc keeps freed heap
    pages for reuse, so after a 40-megapixel photo a server would go on holding ~100 MB it no longer
    uses; malloc_trim returns them. A no-op where the C library has no malloc_trim."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def display_copy(img: Image.Image, side: int = DISPLAY_SIDE) -> np.ndarray:
    """A small (h, w, 3) uint8 copy of ``img`` for showing it, at most ``side`` pixels a side."""
    small = img.convert("RGB")
    if max(small.size) > side:
        small = small.copy()
        small.thumbnail((side, side), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8)


def cutout_of(picture: Image.Image, *, framing: str = "none", target_fraction: float | None = None,
              sky=CATALOGUE_SKY, size: int = STORED_SIZE) -> tuple[np.ndarray, list[str], Framing | None]:
    """An RGB picture prepared as the catalogue was stored: ((size, size, 3) uint8, notes, framing).

    ``framing="auto"`` first pads or crops around the galaxy so that its half-light radius covers
    ``target_fraction`` of the frame (default ``CATALOGUE_EXTENT``); ``"none"`` takes the plain
    centre square. ``sky`` (per channel, 0-255) moves the cutout's border sky to that level
    (:func:`galaxy_vae.sky.match_sky`); None keeps the picture's own. Uploads and
    ``evaluate --robustness`` both go through here, so what is measured is what the app does.
    """
    if framing not in ("auto", "none"):
        raise ValueError(f'framing must be "auto" or "none", got {framing!r}')
    notes, framed = [], None
    if framing == "auto":
        framed = frame_to(picture, CATALOGUE_EXTENT if target_fraction is None else target_fraction)
        notes.append(framed.describe())
        picture = framed.image
    if picture.width != picture.height:
        side = min(picture.size)
        notes.append(f"centre square {side}x{side} of the {picture.width}x{picture.height} picture kept")
    stored = square_cutout(picture, size)
    if sky is not None:
        before = border_sky(stored)
        stored = match_sky(stored, sky)
        if np.abs(before - np.asarray(sky)).max() >= 1:
            notes.append("sky level matched to the catalogue's (from RGB " + "/".join(f"{v:.0f}" for v in before)
                         + " to " + "/".join(f"{v:.0f}" for v in sky) + ")")
    return stored, notes, framed


def prepare_upload(source: Source, *, framing: str = "none", target_fraction: float | None = None,
                   sky=CATALOGUE_SKY, size: int = STORED_SIZE) -> PreparedImage:
    """Read an upload and cut it out as the catalogue was: (size, size, 3) uint8 in ``.stored``
    (:func:`cutout_of`: framing, centre square, sky matched to ``sky``, pass the dataset's own
    ``sky.catalogue_sky(data.images)``). A large picture is reduced while it decodes
    (:data:`WORK_SIDE`), and only small copies outlive this call.
    """
    if framing not in ("auto", "none"):
        raise ValueError(f'framing must be "auto" or "none", got {framing!r}')
    decoded = read_image(source, max_side=WORK_SIDE)
    stored, notes, framed = cutout_of(decoded.image, framing=framing, target_fraction=target_fraction, sky=sky,
                                      size=size)
    stored.flags.writeable = False
    shown = display_copy(framed.image) if framed else None
    prepared = PreparedImage(stored, display_copy(decoded.image), shown, decoded.original_size,
                             tuple(decoded.notes) + tuple(notes), replace(framed, image=None) if framed else None)
    if decoded.original_size[0] * decoded.original_size[1] > BIG_PICTURE:
        del decoded, framed
        release_freed_memory()
    return prepared
