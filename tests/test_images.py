"""Decoding and preparing uploads: every bad file a user may bring, and every valid oddity.

Format cases use tiny files generated here (the behaviour depends on the file format, not on what
galaxies look like); the Milky Way and catalogue cases use the real images.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from galaxy_vae.cutouts import DISPLAY_SIDE, prepare_upload, square_cutout
from galaxy_vae.errors import ImageError
from galaxy_vae.extent import CATALOGUE_EXTENT
from galaxy_vae.framing import frame_to
from galaxy_vae.images import MAX_PIXELS, MIN_SIDE, STORED_SIZE, decode_image, read_image


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_chunks(width: int, height: int, depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG written by hand: lets a test claim any size or bit depth PIL would not write."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def blob(size: int = 48) -> Image.Image:
    """A soft round blob on black with some colour: enough structure for format round trips."""
    yy, xx = np.mgrid[:size, :size]
    glow = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size * 2.0))
    rgb = np.stack([230 * glow, 160 * glow, 90 * glow], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def refused(data, *words: str) -> ImageError:
    """Assert ``data`` is refused with an ImageError whose message holds every word; return it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing from PIL may leak as a warning either
        with pytest.raises(ImageError) as info:
            read_image(data)
    err = info.value
    assert err.expected and err.found and err.fix
    for word in words:
        assert word.lower() in str(err).lower(), (word, str(err))
    return err


# --- bad uploads ------------------------------------------------------------------------------

def test_images_empty_file_refused(tmp_path):
    refused(b"", "empty file (0 bytes)")
    path = tmp_path / "galaxy.jpg"
    path.write_bytes(b"")
    assert "galaxy.jpg" in str(refused(path, "empty"))


def test_images_truncated_files_refused():
    png = encode(blob(), "PNG")
    jpeg = encode(blob(), "JPEG", quality=95)
    refused(png[: len(png) // 2], "truncated")
    refused(jpeg[: len(jpeg) // 2], "truncated")
    refused(jpeg[:40], "damaged")  # cut inside the header


def test_images_text_named_png_refused(tmp_path):
    path = tmp_path / "andromeda.png"
    path.write_text("These are my observing notes, not a picture.\n")
    err = refused(path, "text, not a picture", "andromeda.png")
    assert "observing notes" in err.found


@pytest.mark.parametrize("data, words", [
    (b"\x00\x00\x00\x18ftypheic" + bytes(64), ("HEIC",)),
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', ("SVG",)),
    (b"%PDF-1.7\n", ("PDF",)),
    (bytes(range(7, 250)), ("recognises",)),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n", ("text",)),  # EPS would run Ghostscript: never decoded
])
def test_images_non_pictures_refused(data, words):
    refused(data, *words)


def test_images_decompression_bomb_refused_before_decoding():
    # A real bomb: 49 megapixels of zeros squeezed into ~50 kB (PIL itself only warns above 89).
    bomb = png_chunks(7000, 7000, 8, 0, bytes(7000 * 7001))
    assert len(bomb) < 100_000
    refused(bomb, f"at most {MAX_PIXELS // 1_000_000} megapixels", "7000x7000")
    # The same header with almost no data: had it been decoded it would read as truncated.
    refused(png_chunks(7000, 7000, 8, 0, b"\x00" * 10), "megapixels", "7000x7000")
    # Sizes at which PIL warns (100 MP) or raises (400 MP): still one clean ImageError.
    refused(png_chunks(10_000, 10_000, 8, 0, b"\x00"), "megapixels", "bomb")
    refused(png_chunks(20_000, 20_000, 8, 0, b"\x00"), "megapixels", "bomb")


def test_images_single_pixel_refused():
    dot = encode(Image.new("RGB", (1, 1), (255, 255, 255)), "PNG")
    refused(dot, f"at least {MIN_SIDE}x{MIN_SIDE}", "1x1")
    read_image(encode(Image.new("RGB", (MIN_SIDE, MIN_SIDE)), "PNG"))  # the smallest accepted


def test_images_extreme_aspect_ratio_refused():
    err = refused(encode(Image.new("RGB", (1, 10_000)), "PNG"), "10 times longer", "1x10000")
    assert "1x1" in err.found  # says what the centre square would have kept
    refused(encode(Image.new("RGB", (2000, 100)), "PNG"), "2000x100")
    assert read_image(encode(Image.new("RGB", (1000, 100)), "PNG")).image.size == (1000, 100)


def test_images_missing_path_and_folder_refused(tmp_path):
    refused(tmp_path / "nothing-here.png", "no such file")
    refused(tmp_path, "a folder")


def test_images_damaged_files_never_escape_as_other_errors():
    """Random corruption of every supported format: a correct picture or an ImageError, nothing else."""
    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    files = [encode(base, "PNG"), encode(base, "JPEG"), encode(base, "WEBP"),
             encode(base.convert("RGBA"), "WEBP", lossless=True), encode(base, "BMP"),
             encode(base, "GIF", save_all=True, append_images=[base.rotate(90)]), encode(base, "TIFF"),
             encode(Image.fromarray(rng.random((40, 48), dtype=np.float32)), "TIFF"),
             encode(base.convert("CMYK"), "JPEG"), encode(base.convert("P"), "PNG", transparency=3)]
    outcomes = {"ok": 0, "refused": 0}
    for data in files:
        for _ in range(25):
            damaged = bytearray(data)
            if rng.random() < 0.3:
                damaged = damaged[: rng.integers(1, len(damaged))]
            else:
                for _ in range(rng.integers(1, 8)):
                    damaged[rng.integers(0, min(len(damaged), 160))] = rng.integers(0, 256)
            try:
                prepared = prepare_upload(bytes(damaged))
            except ImageError:
                outcomes["refused"] += 1
            else:
                assert prepared.stored.shape == (STORED_SIZE, STORED_SIZE, 3)
                outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0  # both paths were exercised


# --- valid oddities, decoded correctly ---------------------------------------------------------

def test_images_16bit_grey_png_scaled_not_clipped():
    values = np.array([[0, 1000, 32896, 65535]] * 8, dtype=np.uint16).repeat(2, axis=1)
    decoded = read_image(encode(Image.fromarray(values), "PNG"))
    assert "16-bit image scaled to 8 bits" in decoded.notes
    got = np.asarray(decoded.image)
    assert got.dtype == np.uint8 and got.shape == (8, 8, 3)
    # 1000/257 -> 4 (clipping would give 255), 32896/257 = 128, 65535 -> 255; grey in R, G and B
    np.testing.assert_array_equal(got[0, ::2, 0], [0, 4, 128, 255])
    assert (got == got[..., :1]).all()


def test_images_16bit_colour_png_scaled():
    pixel = np.array([65535, 32896, 2570], dtype=">u2")  # 255, 128, 10 in 8 bits
    raw = b"".join(b"\x00" + np.tile(pixel, 16).tobytes() for _ in range(16))
    decoded = read_image(png_chunks(16, 16, 16, 2, raw))
    assert "16-bit image scaled to 8 bits" in decoded.notes
    np.testing.assert_array_equal(np.asarray(decoded.image)[3, 3], [255, 128, 10])


def test_images_cmyk_jpeg_converted_to_rgb():
    original = np.zeros((32, 32, 3), np.uint8)
    original[:, :16] = (200, 100, 50)
    original[:, 16:] = (20, 60, 220)
    data = encode(Image.fromarray(original).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded = read_image(data)
    assert decoded.image.mode == "RGB" and any("CMYK" in note for note in decoded.notes)
    got = np.asarray(decoded.image).astype(int)
    assert np.abs(got[8, 4] - (200, 100, 50)).max() <= 6  # JPEG round-trip tolerance
    assert np.abs(got[8, 28] - (20, 60, 220)).max() <= 6


def test_images_palette_png_transparency_flattened_on_black():
    img = Image.new("P", (16, 16), 0)
    img.putpalette([255, 255, 255, 0, 200, 0] + [0] * 762)
    img.putpixel((5, 5), 1)
    decoded = read_image(encode(img, "PNG", transparency=0))  # index 0 (white) is transparent
    got = np.asarray(decoded.image)
    assert (got[0, 0] == 0).all()  # transparent white -> black
    np.testing.assert_array_equal(got[5, 5], [0, 200, 0])
    assert "transparent pixels flattened onto black" in decoded.notes


def test_images_animated_gif_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    decoded = read_image(data)
    assert "first frame of an animated GIF" in decoded.notes
    r, g, b = np.asarray(decoded.image)[8, 8]
    assert r > 200 and g < 50 and b < 50


def test_images_exif_rotation_applied():
    img = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 tall: red left half, blue right half
    img[:, :20] = (255, 0, 0)
    img[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = read_image(encode(Image.fromarray(img), "JPEG", quality=95, exif=exif.tobytes()))
    assert decoded.original_size == (40, 20) and decoded.image.size == (20, 40)
    assert "turned upright as its EXIF orientation says" in decoded.notes
    got = np.asarray(decoded.image).astype(int)
    # turned clockwise: the left half of the stored picture is now the top half
    assert got[5, 10, 0] > 200 and got[5, 10, 2] < 60
    assert got[35, 10, 2] > 200 and got[35, 10, 0] < 60


def test_images_float_tiff_scaled_by_range_with_nan_and_inf():
    values = np.linspace(-3.0, 5.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    values[0, 0], values[0, 1], values[0, 2] = np.nan, np.inf, -np.inf
    decoded = read_image(encode(Image.fromarray(values), "TIFF"))
    assert decoded.image.mode == "RGB"
    got = np.asarray(decoded.image)[..., 0].astype(int)
    lo, hi = float(values[np.isfinite(values)].min()), 5.0
    expected = np.rint((values[8, 8] - lo) / (hi - lo) * 255)
    assert abs(got[8, 8] - expected) <= 1  # linear in the finite range
    assert got[15, 15] == 255 and got[0, 3] == 0  # range ends
    assert got[0, 0] == 0 and got[0, 1] == 255 and got[0, 2] == 0  # NaN, +inf, -inf
    assert any("float" in note for note in decoded.notes) and any("NaN" in note for note in decoded.notes)


@pytest.mark.parametrize("img, pixel", [
    (Image.new("L", (16, 16), 90), (90, 90, 90)),
    (Image.new("LA", (16, 16), (200, 0)), (0, 0, 0)),  # fully transparent -> black
    (Image.new("1", (16, 16), 1), (255, 255, 255)),
])
def test_images_greyscale_modes_become_rgb(img, pixel):
    got = np.asarray(read_image(encode(img, "PNG")).image)
    assert got.shape == (16, 16, 3)
    np.testing.assert_array_equal(got[4, 4], pixel)


def test_images_32bit_integer_tiff_scaled_by_range():
    values = (np.arange(256, dtype=np.int32).reshape(16, 16) * 1000)  # 0 .. 255,000
    decoded = read_image(encode(Image.fromarray(values), "TIFF"))
    got = np.asarray(decoded.image)[..., 0].astype(int)
    assert got[0, 0] == 0 and got[15, 15] == 255 and abs(got[8, 0] - 128) <= 1
    assert any("32-bit integer" in note for note in decoded.notes)


def test_images_milky_way_webp_alpha_flattened_on_black(milky_way_path):
    with Image.open(milky_way_path) as raw:
        assert raw.mode == "RGBA"
        alpha = np.asarray(raw.getchannel("A"))
    decoded = read_image(milky_way_path)
    got = np.asarray(decoded.image)
    assert decoded.image.mode == "RGB" and got.shape == (800, 800, 3) and decoded.format == "WEBP"
    assert (got[[0, 0, -1, -1], [0, -1, 0, -1]] == 0).all()  # the four corners are black
    assert (got[alpha == 0] == 0).all()  # every fully transparent pixel is black
    assert got[400, 400].max() > 100  # the bright bar at the centre survives
    assert "transparent pixels flattened onto black" in decoded.notes
    assert decode_image(milky_way_path).size == (800, 800)


def test_images_file_objects_and_names():
    data = encode(blob(), "PNG")
    upload = io.BytesIO(data)
    upload.name = "m51.png"  # like Streamlit's UploadedFile
    upload.read()  # already consumed once: read_image rewinds
    assert read_image(upload).image.size == (48, 48)
    broken = io.BytesIO(data[:30])
    broken.name = "m51-broken.png"
    assert "m51-broken.png" in str(refused(broken))


# --- prepare_upload ---------------------------------------------------------------------------

def test_images_prepare_without_framing_is_plain_square_cutout(milky_way_path):
    prepared = prepare_upload(milky_way_path, framing="none", sky=None)
    expected = square_cutout(decode_image(milky_way_path))
    np.testing.assert_array_equal(prepared.stored, expected)
    assert prepared.framing is None and prepared.original_size == (800, 800)
    assert prepared.stored.dtype == np.uint8 and prepared.stored.shape == (STORED_SIZE, STORED_SIZE, 3)
    assert not prepared.stored.flags.writeable


def test_images_prepare_non_square_takes_centre_square():
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, 40:80] = 255  # only the centre square is white
    prepared = prepare_upload(encode(Image.fromarray(wide), "PNG"), framing="none", sky=None)
    assert (prepared.stored == 255).all()
    assert any("centre square 40x40" in note for note in prepared.notes)


def test_images_prepare_auto_frames_and_notes(milky_way_path):
    prepared = prepare_upload(milky_way_path, framing="auto", sky=None)
    assert prepared.framing is not None and prepared.framing.applied
    assert any(note.startswith("framed (padded)") for note in prepared.notes)
    assert prepared.stored.shape == (STORED_SIZE, STORED_SIZE, 3)
    framed = frame_to(decode_image(milky_way_path), CATALOGUE_EXTENT)
    np.testing.assert_array_equal(prepared.stored, square_cutout(framed.image))
    assert prepared.framing.image is None  # only small copies outlive preparation
    assert max(prepared.picture.shape[:2]) <= DISPLAY_SIDE and max(prepared.framed.shape[:2]) <= DISPLAY_SIDE
    with pytest.raises(ValueError, match="framing"):
        prepare_upload(milky_way_path, framing="tight")


def test_images_prepare_carries_decoding_notes():
    frames = [blob(32), blob(32).rotate(90)]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    prepared = prepare_upload(gif, framing="none")
    assert "first frame of an animated GIF" in prepared.notes


def test_images_prepare_matches_the_sky_to_the_catalogues(sample):
    """A brighter, tinted sky is moved to the catalogue's level (border median per channel); the
    galaxy's light above it is kept; sky=None keeps the picture's own."""
    from galaxy_vae.sky import CATALOGUE_SKY, border_sky

    bright = np.clip(sample.images[10].astype(int) + np.array([30, 20, 40]), 0, 255).astype(np.uint8)
    prepared = prepare_upload(encode(Image.fromarray(bright), "PNG"))
    assert np.abs(border_sky(prepared.stored) - np.array(CATALOGUE_SKY)).max() <= 1
    assert np.abs(prepared.stored.astype(int) - sample.images[10]).mean() < 3
    assert any("sky level matched" in note for note in prepared.notes)
    kept = prepare_upload(encode(Image.fromarray(bright), "PNG"), sky=None)
    assert np.array_equal(kept.stored, bright) and not any("sky" in n for n in kept.notes)
