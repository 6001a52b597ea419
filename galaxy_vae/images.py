"""Turning picture files into galaxy cutouts: the one place images are decoded and framed.

Catalogue images and user uploads go through the same functions, so an uploaded picture is
prepared exactly as the catalogue was:

    file / bytes --decode_image--> RGB PIL image (alpha flattened on black)
                 --galaxy10_cutout--> (69, 69, 3) uint8   # Galaxy Zoo frame: central 207/424
                 --square_cutout----> (69, 69, 3) uint8   # any other picture: centre square

The stored size (69) matches Galaxy10 SDSS; models then take the central 64x64
(:func:`galaxy_vae.data.center_crop`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

STORED_SIZE = 69  # Galaxy10 SDSS stores 69x69 cutouts
GZ_CROP_FRACTION = 207 / 424  # Galaxy10 keeps the central 207 px of the 424 px Galaxy Zoo frame
RESAMPLE = Image.Resampling.BOX  # area averaging: Galaxy10's 3x downscale, exact for integer ratios


def flatten_alpha(img: Image.Image) -> Image.Image:
    """RGB image with any transparency composited onto black (space is black)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(source: str | Path | bytes) -> Image.Image:
    """Decode a picture file (path or bytes) into an RGB image, transparency flattened on black."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with Image.open(fp) as img:
        img.load()
        return flatten_alpha(img)


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
