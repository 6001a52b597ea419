"""Turning picture files into galaxy cutouts: the one place images are decoded, framed and cut out.

Catalogue images and user uploads go through the same functions, so an uploaded picture is
prepared exactly as the catalogue was:

    file / bytes --read_image------> RGB PIL image + notes (every bad file -> ImageError)
                 --galaxy10_cutout--> (69, 69, 3) uint8   # Galaxy Zoo frame: central 207/424
                 --square_cutout----> (69, 69, 3) uint8   # any other picture: centre square
    upload       --prepare_upload---> PreparedImage: read, then cutout_of: optionally framed like
                                      the catalogue (galaxy_vae.framing), square_cutout, and its
                                      sky matched to the catalogue's (galaxy_vae.sky)

The stored size (69) matches Galaxy10 SDSS; models then take the central 64x64
(:func:`galaxy_vae.data.model_view`).

Decoding turns every file a user may bring into 8-bit RGB, or refuses it with an ImageError that
says what was expected, what was found and what to do: empty, truncated or non-picture files,
headers claiming more than MAX_PIXELS (checked before any pixel is decoded), pictures smaller
than MIN_SIDE or longer than MAX_ASPECT times their width. Valid oddities are handled and noted:
16-bit and float pixels are rescaled (not clipped), CMYK is converted (through its ICC profile
when it has one), transparency is flattened on black (space is black), animations give their
first frame, and EXIF orientation is applied.
"""

from __future__ import annotations

import ctypes
import io
import logging
import struct
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from galaxy_vae.errors import ImageError
from galaxy_vae.extent import CATALOGUE_EXTENT
from galaxy_vae.framing import Framing, frame_to
from galaxy_vae.sky import CATALOGUE_SKY, border_sky, match_sky

log = logging.getLogger(__name__)

STORED_SIZE = 69  # Galaxy10 SDSS stores 69x69 cutouts
GZ_CROP_FRACTION = 207 / 424  # Galaxy10 keeps the central 207 px of the 424 px Galaxy Zoo frame
RESAMPLE = Image.Resampling.BOX  # area averaging: Galaxy10's 3x downscale, exact for integer ratios

# The one list of accepted pictures: PIL decoder -> (name for people, file extensions). The
# uploader's type filter, every "save it as ..." message and the CLI all read it.
PICTURE_TYPES = {"JPEG": ("JPEG", ("jpg", "jpeg")), "PNG": ("PNG", ("png",)), "WEBP": ("WebP", ("webp",)),
                 "GIF": ("GIF", ("gif",)), "TIFF": ("TIFF", ("tif", "tiff")), "BMP": ("BMP", ("bmp",))}
FORMATS = tuple(PICTURE_TYPES)  # decoders allowed (JPEG includes MPO)
UPLOAD_EXTENSIONS = [ext for _, exts in PICTURE_TYPES.values() for ext in exts]
MAX_PIXELS = 40_000_000  # 40 megapixels: a large camera photo; more is refused before decoding
MIN_SIDE = 8  # px: below this no galaxy shape survives (the stored cutout is 69 px)
WORK_SIDE = 1024  # px: uploads are box-reduced (by whole factors) until their shorter side is near this
DISPLAY_SIDE = 384  # px: the copies of an upload kept for display after preparation
BIG_PICTURE = 4_000_000  # pixels: after preparing a picture this large, freed memory goes back to the OS
MAX_ASPECT = 10.0  # longer/shorter side: beyond it the centre square keeps < 10 % of the picture
# what PIL raises on broken or hostile files (struct/zlib/Index errors come from malformed headers)
PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError,
              struct.error, zlib.error, Image.DecompressionBombError, Image.DecompressionBombWarning)
_NAMES = [name for name, _ in PICTURE_TYPES.values()]
KNOWN_FORMATS = ", ".join(_NAMES[:-1]) + " or " + _NAMES[-1]  # "JPEG, PNG, WebP, GIF, TIFF or BMP"

Source = str | Path | bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A picture file as 8-bit RGB, with what decoding had to do to it."""

    image: Image.Image  # RGB, upright, transparency flattened on black
    original_size: tuple[int, int]  # (width, height) in the file, before EXIF rotation
    format: str  # PIL format name, e.g. "PNG"
    notes: tuple[str, ...]  # human-readable, e.g. "first frame of an animated GIF"


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


def flatten_alpha(img: Image.Image) -> Image.Image:
    """RGB image with any transparency composited onto black (space is black)."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def _fail(label: str, expected: str, found: str, fix: str) -> ImageError:
    return ImageError(f"Cannot use {label}", expected=expected, found=found, fix=fix)


def _read_source(source: Source) -> tuple[bytes, str]:
    """The file's bytes and a name for messages; paths and upload objects alike."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "the uploaded picture"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            found = "a folder" if path.is_dir() else "no such file"
            raise _fail(path.name or str(path), "a picture file", found, "Check the path.")
        return path.read_bytes(), path.name
    if hasattr(source, "read"):  # an open file, or Streamlit's UploadedFile (a BytesIO)
        if hasattr(source, "seek"):
            source.seek(0)
        return source.read(), str(getattr(source, "name", "the uploaded picture"))
    raise TypeError(f"expected a path, bytes or a binary file, got {type(source).__name__}")


def _what_it_is(data: bytes) -> str:
    """A plain description of bytes that no allowed decoder recognised."""
    head = data[:512]
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "a HEIC/AVIF picture, which galaxy_vae does not decode"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"data no picture decoder recognises (it starts with bytes {head[:8].hex(' ')})"
    if "<svg" in text.lower():
        return "an SVG drawing (vector graphics, not pixels)"
    preview = " ".join(text.split())[:40]
    return f"text, not a picture (it starts {preview!r})"


def _check_size(label: str, w: int, h: int) -> None:
    """Refuse sizes no galaxy cutout can come from: read from the header, before decoding."""
    if w * h > MAX_PIXELS:
        raise _fail(label, f"at most {MAX_PIXELS // 1_000_000} megapixels",
                    f"{w}x{h} pixels ({w * h / 1e6:.0f} megapixels) in its header",
                    "Downscale or crop the picture around the galaxy; a few hundred pixels a side is plenty.")
    if max(w, h) > MAX_ASPECT * min(w, h):
        side = min(w, h)
        raise _fail(label, f"a picture at most {MAX_ASPECT:g} times longer than it is wide",
                    f"{w}x{h} pixels: its centre square would keep only {side}x{side} of them",
                    "Crop the picture around the galaxy so that it is roughly square.")
    if min(w, h) < MIN_SIDE:
        raise _fail(label, f"at least {MIN_SIDE}x{MIN_SIDE} pixels",
                    f"{w}x{h} pixels, too small to show a galaxy's shape",
                    f"Upload a larger cutout (catalogue galaxies are stored at {STORED_SIZE}x{STORED_SIZE}).")


def _scaled_to_l(values: np.ndarray, lo: float, hi: float) -> Image.Image:
    """Greyscale 'L' image of ``values`` mapped linearly from [lo, hi] to 0..255."""
    span = hi - lo if hi > lo else 1.0
    out = np.clip(np.rint((values.astype(np.float64) - lo) * (255.0 / span)), 0, 255)
    return Image.fromarray(out.astype(np.uint8), "L")


def _wide_to_l(img: Image.Image, label: str, notes: list[str]) -> Image.Image:
    """16-bit, 32-bit integer or float greyscale -> 8-bit 'L', scaled (PIL's convert would clip)."""
    values = np.asarray(img)
    if img.mode == "F":
        finite = np.isfinite(values)
        if not finite.any():
            raise _fail(label, "finite pixel values", "only NaN or infinite values",
                        "Export the picture again.")
        lo, hi = float(values[finite].min()), float(values[finite].max())
        bad = int((~finite).sum())
        if bad:  # NaN and -inf go to black, +inf to white
            values = np.where(np.isposinf(values), hi, values)
            values = np.where(np.isfinite(values), values, lo)
            notes.append(f"{bad} NaN/infinite pixels set to the picture's black or white")
        notes.append(f"32-bit float image scaled from its range [{lo:.4g}, {hi:.4g}] to 8 bits")
        return _scaled_to_l(values, lo, hi)
    lo, hi = int(values.min()), int(values.max())
    if img.mode.startswith("I;16") or (lo >= 0 and 255 < hi <= 65535):
        notes.append("16-bit image scaled to 8 bits")
        return _scaled_to_l(values, 0, 65535)
    if lo >= 0 and hi <= 255:
        return Image.fromarray(values.astype(np.uint8), "L")  # 8-bit data stored in a wide mode
    notes.append(f"32-bit integer image scaled from its range [{lo}, {hi}] to 8 bits")
    return _scaled_to_l(values, lo, hi)


def _to_rgb(img: Image.Image, label: str, notes: list[str]) -> Image.Image:
    """Any decoded PIL mode -> RGB, noting what changed."""
    mode = img.mode
    if mode in ("F", "I") or mode.startswith("I;16"):
        return _wide_to_l(img, label, notes).convert("RGB")
    if mode == "CMYK":
        profile = img.info.get("icc_profile")
        if profile:
            try:
                cmyk = ImageCms.ImageCmsProfile(io.BytesIO(profile))
                rgb = ImageCms.profileToProfile(img, cmyk, ImageCms.createProfile("sRGB"), outputMode="RGB")
                notes.append("CMYK image converted to RGB through its colour profile")
                return rgb
            except (ImageCms.PyCMSError, OSError, ValueError) as exc:
                log.info("CMYK profile unusable (%s); converting without it", exc)
        notes.append("CMYK image converted to RGB")
        return img.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        alpha = img.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            notes.append("transparent pixels flattened onto black")
        return flatten_alpha(img)
    if mode in ("1", "L"):
        notes.append("greyscale picture: the same values in R, G and B")
    try:
        return img.convert("RGB")
    except ValueError:
        raise _fail(label, "an RGB, greyscale, palette, CMYK, 16-bit or float picture", f"colour mode {mode}",
                    "Convert the picture to RGB (for example, save it as PNG).") from None


def _frame_note(img: Image.Image) -> str | None:
    """Say which frame or page is used when the file holds several."""
    try:
        if not getattr(img, "is_animated", False):  # GIF/PNG/WebP look only for a second frame
            return None
    except PIL_ERRORS:  # the first frame decoded; a later one is damaged
        return f"first frame of a {img.format} whose later frames are damaged"
    if img.format == "TIFF":
        return "first page of a multi-page TIFF"
    if img.format == "MPO":
        return "first picture of a multi-picture JPEG (MPO)"
    return f"first frame of an animated {img.format}"


def _reduced(img: Image.Image, max_side: int | None, notes: list[str]) -> Image.Image:
    """``img`` box-reduced by the largest whole factor that keeps its shorter side >= ``max_side``:
    done before any copy (rotation, colour conversion, framing), so a 40-megapixel photo costs its
    decoded bytes once, not four times. Modes PIL cannot reduce are left as they are."""
    factor = min(img.size) // max_side if max_side else 0
    if factor < 2:
        return img
    try:
        out = img.reduce(factor)
    except (ValueError, NotImplementedError):
        return img
    notes.append(f"reduced {factor}x to {out.width}x{out.height} before preparing (its galaxy needs no more)")
    return out


def read_image(source: Source, max_side: int | None = None) -> DecodedImage:
    """Decode a picture (path, bytes, or binary file) into upright 8-bit RGB; see module docstring.
    With ``max_side``, a larger picture is box-reduced while it decodes (JPEG: at decode time) so
    that its shorter side stays at least ``max_side``.

    Raises :class:`ImageError` for anything that is not a usable galaxy picture.
    """
    data, label = _read_source(source)
    if not data:
        raise _fail(label, f"a picture file ({KNOWN_FORMATS})", "an empty file (0 bytes)",
                    "The upload or copy did not finish: choose the file again.")
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        # PIL only warns between 89 and 179 megapixels; our MAX_PIXELS is lower and checked below.
        # Its other warnings (corrupt EXIF or TIFF tags it skipped) are logged, not shown.
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            raise _fail(label, f"a picture file ({KNOWN_FORMATS})", _what_it_is(data),
                        f"Save the picture as {KNOWN_FORMATS} and upload that.") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _fail(label, f"at most {MAX_PIXELS // 1_000_000} megapixels",
                        f"a header claiming over {Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels "
                        "(a decompression bomb, or a huge picture)",
                        "Downscale or crop the picture around the galaxy first.") from None
        except PIL_ERRORS as exc:
            raise _fail(label, f"a complete {KNOWN_FORMATS} file", f"a damaged header ({exc})",
                        "Download or export the picture again.") from None
        with img:
            fmt = img.format or "?"
            size = img.size
            _check_size(label, *size)
            frame_note = _frame_note(img)
            try:
                if max_side and fmt == "JPEG" and min(size) >= 2 * max_side:
                    img.draft("RGB", (size[0] * max_side // min(size), size[1] * max_side // min(size)))
                img.load()  # first frame only
                if img.size != size:
                    notes.append(f"decoded at {img.width}x{img.height}, a {size[0] // img.width}x reduction "
                                 "(its galaxy needs no more)")
                orientation = img.getexif().get(0x0112, 1)  # EXIF "Orientation"; 1 = upright
                upright = ImageOps.exif_transpose(_reduced(img, max_side, notes))  # a copy, upright
            except PIL_ERRORS as exc:
                raise _fail(label, f"a complete {fmt} file",
                            f"a truncated or damaged {fmt} file ({exc})",
                            "Download or export the picture again.") from None
    for warning in caught:
        log.info("%s: %s", label, warning.message)
    if frame_note:
        notes.append(frame_note)
    if orientation in range(2, 9):
        notes.append("turned upright as its EXIF orientation says")
    if fmt == "PNG" and data[24:25] == b"\x10" and upright.mode in ("RGB", "RGBA", "LA"):
        notes.append("16-bit image scaled to 8 bits")  # PIL reads 16-bit colour PNGs as 8-bit
    del data, img
    return DecodedImage(_to_rgb(upright, label, notes), size, fmt, tuple(notes))


def decode_image(source: Source) -> Image.Image:
    """Decode a picture file (path or bytes) into an RGB image, transparency flattened on black."""
    return read_image(source).image


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
