"""Automatic framing: make an upload's galaxy cover the same fraction of its frame as the catalogue's.

Catalogue cutouts show a galaxy in the middle third to half of a dark frame; the NASA Milky Way and
many photos fill theirs. Similarity in a model's latent space depends on that scale, so uploads are
padded or cropped to the catalogue's typical extent before they are prepared.

The galaxy's size and place come from :mod:`galaxy_vae.extent`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from galaxy_vae.extent import Extent, measure_extent

log = logging.getLogger(__name__)

CENTRED = 0.08  # a core this close to the picture's centre (share of the frame's side) counts as centred
ZOOM_LIMIT = 8.0  # framing never magnifies or shrinks a picture by more than this
MIN_FRAME = 16  # px: the smallest crop framing will take from a picture
CANVAS_SIDE = 1024  # px: the framed square is drawn at most this large (it becomes a 69 px cutout)


@dataclass(frozen=True)
class Framing:
    """The framed picture with the galaxy's extent before and after."""

    image: Image.Image | None  # square RGB picture, galaxy centred, at most CANVAS_SIDE a side (the
    # picture unchanged when applied is False; None once only the extents are kept)
    before: Extent
    after: Extent
    target: float  # the extent asked for
    box: tuple[int, int, int, int]  # the square taken from the picture; may reach past its edges
    applied: bool  # False when no galaxy was found and the picture was left as it was
    clamped: bool = False  # True when ZOOM_LIMIT / MIN_FRAME stopped short of the target

    def describe(self) -> str:
        """One line for a user: what framing did."""
        if not self.applied:
            return "framing skipped: no galaxy stands out from the background"
        side = self.box[2] - self.box[0]
        how = "padded" if side > min(self.before.size) else "cropped"
        text = (f"framed ({how}): galaxy half-light radius {self.before.fraction:.2f} -> "
                f"{self.after.fraction:.2f} of the frame (catalogue {self.target:.2f})")
        return text + (" (zoom limited: the galaxy is tiny or overfills its picture)" if self.clamped else "")


def _framing_centre(core: tuple[float, float], size: tuple[int, int], side: float) -> tuple[float, float]:
    """Where to centre a frame of ``side`` px: the picture's own centre when the galaxy's core lies
    within CENTRED of that side from it, else the core.

    Catalogue cutouts, and most photos, are centred on their galaxy; re-centring those on the
    measured core (noisy by a pixel or two) would shift them, and similarity is sensitive to such
    shifts. The tolerance is a share of the frame taken, not of the picture, so a galaxy off the
    centre of a large picture (a small frame out of it) is still re-centred.
    """
    centre = (size[0] / 2, size[1] / 2)
    near = all(abs(c - m) <= CENTRED * side for c, m in zip(core, centre))
    return centre if near else core


def frame_to(img: Image.Image | np.ndarray, target_fraction: float) -> Framing:
    """Pad or crop ``img`` around its galaxy so the galaxy's extent is ``target_fraction``.

    The result is a square picture centred on the galaxy (see :func:`_framing_centre`), padded with
    the sky colour where it reaches past the picture. A square larger than CANVAS_SIDE (a small
    galaxy in a large picture, padded out) is drawn box-reduced to that size: the caller resizes it
    to 69 px anyway, and the canvas of a 5,000 px picture padded 3x would otherwise be 225 megapixels.
    """
    if not 0 < target_fraction < 0.5:
        raise ValueError(f"target_fraction must lie in (0, 0.5), got {target_fraction}")
    if isinstance(img, np.ndarray):
        img = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    pil = img.convert("RGB")
    before = measure_extent(pil)
    short = min(pil.size)
    if not before.found:
        log.info("framing skipped: no flux above the sky")
        return Framing(pil, before, before, target_fraction, (0, 0) + pil.size, applied=False)
    wanted = before.radius / target_fraction  # side of the square that puts the galaxy at target
    side = float(np.clip(wanted, max(MIN_FRAME, short / ZOOM_LIMIT), short * ZOOM_LIMIT))
    side_px = max(1, round(side))
    centre = _framing_centre(before.centre, pil.size, side_px)
    left = round(centre[0] - side_px / 2)
    top = round(centre[1] - side_px / 2)
    box = (left, top, left + side_px, top + side_px)
    scale = min(1.0, CANVAS_SIDE / side_px)  # canvas pixels per picture pixel
    canvas = Image.new("RGB", (max(1, round(side_px * scale)),) * 2, before.sky)
    inside = (max(left, 0), max(top, 0), min(box[2], pil.width), min(box[3], pil.height))
    if inside[0] < inside[2] and inside[1] < inside[3]:
        at = (round((inside[0] - left) * scale), round((inside[1] - top) * scale))
        part = pil.crop(inside)
        if scale < 1:
            part = part.resize((max(1, round(part.width * scale)), max(1, round(part.height * scale))),
                               Image.Resampling.BOX)
        canvas.paste(part, at)
    after = measure_extent(canvas)
    return Framing(canvas, before, after, target_fraction, box, applied=True,
                   clamped=abs(side - wanted) > 0.5)
