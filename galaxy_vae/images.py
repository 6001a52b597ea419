"""Decoding picture files: the one place a file a user brings becomes 8-bit RGB, or is refused.

    file / bytes --read_image--> DecodedImage: RGB PIL image + notes (every bad file -> ImageError)

Cutting the decoded picture out as the catalogue was stored is :mod:`galaxy_vae.cutouts`.

Decoding turns every file a user may bring into 8-bit RGB, or refuses it with an ImageError that
says what was expected, what was found and what to do: empty, truncated or non-picture files,
headers claiming more than MAX_PIXELS (checked before any pixel is decoded), pictures smaller
than MIN_SIDE or longer than MAX_ASPECT times their width. Valid oddities are handled and noted:
16-bit and float pixels are rescaled (not clipped), CMYK is converted (through its ICC profile
when it has one), transparency is flattened on black (space is black), animations give their
first frame, and EXIF orientation is applied.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from galaxy_vae.errors import ImageError

log = logging.getLogger(__name__)

STORED_SIZE = 69  # Galaxy10 SDSS stores 69x69 cutouts
RESAMPLE = Image.Resampling.BOX  # area averaging: Galaxy10's 3x downscale, exact for integer ratios

# The one list of accepted pictures: PIL decoder -> (name for people, file extensions). The
# uploader's type filter, every "save it as ..." message and the CLI all read it.
PICTURE_TYPES = {"JPEG": ("JPEG", ("jpg", "jpeg")), "PNG": ("PNG", ("png",)), "WEBP": ("WebP", ("webp",)),
                 "GIF": ("GIF", ("gif",)), "TIFF": ("TIFF", ("tif", "tiff")), "BMP": ("BMP", ("bmp",))}
FORMATS = tuple(PICTURE_TYPES)  # decoders allowed (JPEG includes MPO)
UPLOAD_EXTENSIONS = [ext for _, exts in PICTURE_TYPES.values() for ext in exts]
MAX_PIXELS = 40_000_000  # 40 megapixels: a large camera photo; more is refused before decoding
MIN_SIDE = 8  # px: below this no galaxy shape survives (the stored cutout is 69 px)
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
