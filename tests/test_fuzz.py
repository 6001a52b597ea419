"""Property-based fuzzing of everything a user hands the app, the way Pillow and h5py are hardened:
real sample pictures, a synthetic dataset file and a real checkpoint, mutated (cut short, bytes
flipped, sizes and chunk lengths rewritten, formats swapped), must each give a valid result or one
clear error of ours (ImageError, DataError, CheckpointError) -- never another exception -- and
memory stays bounded.

A bounded run in `make test` (a few hundred cases, well under a minute); `make fuzz` runs many
more (GALAXY_VAE_FUZZ_EXAMPLES) and prints hypothesis's statistics.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from uploads import galaxy_image, galaxy_jpeg

from galaxy_vae.checkpoints import load_checkpoint, save_checkpoint
from galaxy_vae.cutouts import PreparedImage, prepare_upload
from galaxy_vae.errors import CheckpointError, DataError, ImageError
from galaxy_vae.hdf5 import describe, open_dataset
from galaxy_vae.models import build_model

EXAMPLES = int(os.environ.get("GALAXY_VAE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("GALAXY_VAE_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
PEAK_MB = 600  # above the process's level when the fuzz test started


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    """Real sample pictures in every accepted format (small, so each mutation decodes fast)."""
    img = galaxy_image().resize((96, 96))
    return {"jpeg": galaxy_jpeg(), "png": _save(img, "PNG"), "webp": _save(img, "WEBP"),
            "gif": _save(img.convert("P"), "GIF"), "tiff": _save(img, "TIFF"), "bmp": _save(img, "BMP")}


SEEDS = _seeds()


def _hwm_reset() -> float:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS:")


def _status(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))


@pytest.fixture
def bounded_memory():
    base = _hwm_reset()
    yield
    assert _status("VmHWM:") - base < PEAK_MB, f"peak {_status('VmHWM:') - base:.0f} MB above the start"


def _png_with_size(data: bytes, width: int, height: int, fix_crc: bool) -> bytes:
    """A PNG whose IHDR claims another size (its CRC fixed or left stale)."""
    out = bytearray(data)
    out[16:24] = struct.pack(">II", width, height)
    if fix_crc:
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])) & 0xFFFFFFFF)
    return bytes(out)


def _png_chunk_length(data: bytes, new_length: int) -> bytes:
    """The first chunk after IHDR declares ``new_length`` bytes."""
    out = bytearray(data)
    out[33:37] = struct.pack(">I", new_length)
    return bytes(out)


@st.composite
def mutated_picture(draw) -> bytes:
    fmt = draw(st.sampled_from(sorted(SEEDS)))
    data = SEEDS[fmt]
    how = draw(st.sampled_from(["truncate", "flip", "splice", "size", "chunk", "header_swap"]))
    if how == "truncate":
        return data[:draw(st.integers(0, len(data)))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 16))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if how == "splice":  # a run of random bytes written over the middle
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at + 64:]
    if how == "size" or how == "chunk":
        png = SEEDS["png"]
        if how == "chunk":
            return _png_chunk_length(png, draw(st.integers(0, 2**32 - 1)))
        big = st.integers(0, 2**31 - 1)
        return _png_with_size(png, draw(big), draw(big), draw(st.booleans()))
    other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]  # one format's header, another's body
    return other[:draw(st.integers(0, 64))] + data[draw(st.integers(0, 64)):]


@FUZZ
@given(data=mutated_picture(), framing=st.sampled_from(["auto", "none"]))
def test_fuzz_any_mutated_picture_is_prepared_or_refused_clearly(bounded_memory, data, framing):
    try:
        prepared = prepare_upload(data, framing=framing)
    except ImageError as exc:
        assert exc.expected and exc.found and exc.fix
        return
    assert isinstance(prepared, PreparedImage)
    assert prepared.stored.shape == (69, 69, 3) and prepared.stored.dtype == np.uint8


@pytest.fixture(scope="module")
def dataset_bytes(tiny_h5) -> bytes:
    return tiny_h5.read_bytes()


@FUZZ
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=24))
def test_fuzz_any_mutated_dataset_file_opens_or_is_refused_clearly(bounded_memory, dataset_bytes, tmp_path, cut, flips):
    data = bytearray(dataset_bytes[:cut % (len(dataset_bytes) + 1)] if cut % 3 == 0 else dataset_bytes)
    for at, value in flips:
        if data:
            data[at % len(data)] = value
    path = tmp_path / "fuzzed.h5"
    path.write_bytes(bytes(data))
    for read in (describe, open_dataset):
        try:
            result = read(path)
        except DataError as exc:
            assert str(path) in str(exc) and exc.fix
            continue
        assert result is not None


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "seed.safetensors", build_model("conv_vae"),
                           {"class_names": [f"c{i}" for i in range(6)]})
    return path.read_bytes()


@FUZZ
@given(where=st.sampled_from(["header", "anywhere", "length"]),
       flips=st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 255)), min_size=1, max_size=12),
       cut=st.one_of(st.none(), st.integers(0, 10**7)))
def test_fuzz_any_mutated_checkpoint_loads_or_is_refused_clearly(bounded_memory, checkpoint_bytes, tmp_path,
                                                                 where, flips, cut):
    data = bytearray(checkpoint_bytes)
    header_end = 8 + struct.unpack("<Q", checkpoint_bytes[:8])[0]
    for at, value in flips:
        span = {"header": header_end, "anywhere": len(data), "length": 8}[where]
        data[at % span] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    path = tmp_path / "fuzzed.safetensors"
    path.write_bytes(bytes(data))
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        assert exc.expected and exc.found and exc.fix
        return
    assert ckpt.model is not None


@settings(max_examples=max(10, EXAMPLES // 10), deadline=None, derandomize=FUZZ.derandomize,
          suppress_health_check=FUZZ.suppress_health_check)
@given(data=mutated_picture())
def test_fuzz_the_map_page_shows_a_message_or_neighbours_for_any_upload(sample_path, data):
    """The same mutations through the page a user sees: never an exception, never the guard's
    'something went wrong'; a refused picture is one error naming it."""
    from apptest import assert_ok, open_page

    at = open_page("latent_map")
    at.file_uploader(key="map_upload").set_value(("fuzzed.png", data, "image/png")).run()
    assert_ok(at)
    errors = [e.value for e in at.error]
    assert len(errors) <= 1 and (not errors or errors[0].startswith("Cannot use fuzzed.png")), errors
