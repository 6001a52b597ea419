"""Pictures users might upload, good and bad, made at test time from a real sample cutout.

Each entry is a function returning (filename, bytes, mime type). Nothing here is committed data:
the files are generated from ../shared/data when a test runs.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from conftest import SAMPLE_DIR
from PIL import Image


def galaxy_jpeg() -> bytes:
    """A real SDSS cutout from the offline sample (the first file by name)."""
    path = sorted((SAMPLE_DIR / "Imagenes").glob("*.jpeg"))[0]
    return path.read_bytes()


def galaxy_image() -> Image.Image:
    return Image.open(io.BytesIO(galaxy_jpeg())).convert("RGB")


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def padded_png(cutout: np.ndarray, factor: int = 3) -> bytes:
    """The 69x69 cutout in the middle of a black frame ``factor`` times wider, as a PNG."""
    side = cutout.shape[0] * factor
    frame = np.zeros((side, side, 3), dtype=np.uint8)
    off = (side - cutout.shape[0]) // 2
    frame[off:off + cutout.shape[0], off:off + cutout.shape[1]] = cutout
    return _save(Image.fromarray(frame), "PNG")


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (3.6 gigapixels by default)."""
    small = bytearray(_save(Image.new("L", (1, 1)), "PNG"))
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    data = bytes(small[ihdr + 8:ihdr + 8 + 13])
    data = struct.pack(">II", width, height) + data[8:]
    small[ihdr + 8:ihdr + 8 + 13] = data
    small[ihdr + 21:ihdr + 25] = struct.pack(">I", zlib.crc32(b"IHDR" + data) & 0xFFFFFFFF)
    return bytes(small)


def exif_rotated_jpeg() -> bytes:
    """The galaxy stored sideways with EXIF orientation 6 (display rotated 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(galaxy_image().transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)


def animated_gif() -> bytes:
    frames = [galaxy_image().convert("P"), Image.new("P", (423, 423))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def palette_png_with_transparency() -> bytes:
    img = galaxy_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return _save(img, "PNG", transparency=0)


def png_16bit() -> bytes:
    grey = np.asarray(galaxy_image().convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    return _save(Image.fromarray(grey), "PNG")


def float_tiff() -> bytes:
    grey = np.asarray(galaxy_image().convert("L"), dtype=np.float32) / 255.0 * 1e4  # flux-like units
    return _save(Image.fromarray(grey, mode="F"), "TIFF")


MARKDOWN_IMAGE = "![](http://127.0.0.1:8999/x.png)"  # would make the browser fetch that URL
MARKDOWN_NAME = "![n](http://127.0.0.1:8999/name.png) **b**.png"

BAD_UPLOADS = {
    "truncated": lambda: ("truncated.jpg", galaxy_jpeg()[: len(galaxy_jpeg()) // 3], "image/jpeg"),
    "zero_bytes": lambda: ("empty.png", b"", "image/png"),
    "text_named_png": lambda: ("notes.png", b"these are my observing notes, not a picture\n" * 5, "image/png"),
    "decompression_bomb": lambda: ("bomb.png", png_bomb(), "image/png"),
    "one_pixel": lambda: ("dot.png", _save(Image.new("RGB", (1, 1), (200, 180, 150)), "PNG"), "image/png"),
    "one_by_10000": lambda: ("line.png", _save(Image.new("RGB", (1, 10000), (90, 90, 90)), "PNG"), "image/png"),
    # markup from a file must show as text: an image link in the content, and one in the file name
    "markdown_content": lambda: ("notes.png", MARKDOWN_IMAGE.encode() + b"\n", "image/png"),
    "markdown_name": lambda: (MARKDOWN_NAME, b"not a picture", "image/png"),
}

VALID_ODD_UPLOADS = {
    "png_16bit": lambda: ("deep.png", png_16bit(), "image/png"),
    "cmyk_jpeg": lambda: ("print.jpg", _save(galaxy_image().convert("CMYK"), "JPEG"), "image/jpeg"),
    "palette_png_transparency": lambda: ("palette.png", palette_png_with_transparency(), "image/png"),
    "animated_gif": lambda: ("anim.gif", animated_gif(), "image/gif"),
    "exif_rotated": lambda: ("phone.jpg", exif_rotated_jpeg(), "image/jpeg"),
    "float_tiff": lambda: ("flux.tif", float_tiff(), "image/tiff"),
    "bmp": lambda: ("galaxy.bmp", _save(galaxy_image(), "BMP"), "image/bmp"),
}
