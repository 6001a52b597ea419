"""Memory of preparing uploads, measured as resident memory (RSS) in a fresh subprocess: any accepted
upload peaks under 400 MB above the process's baseline and, once its file is gone, leaves under 5 MB
behind (only the small prepared arrays). The cases are the heavy ones users bring: huge mostly-empty
PNGs (a bright disc compresses to a few hundred kB), a 40-megapixel photo, a transparent RGBA PNG."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

PEAK_MB, RETAINED_MB = 400, 5

PROBE = r"""
import gc, io, json, sys
import numpy as np
from PIL import Image, ImageDraw
from galaxy_vae.errors import ImageError
from galaxy_vae.cutouts import prepare_upload

def status(key):
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(key))

def disc(side, frac, mode="RGB"):
    img = Image.new("L", (side, side), 0)
    r = side * frac
    ImageDraw.Draw(img).ellipse((side / 2 - r, side / 2 - r, side / 2 + r, side / 2 + r), fill=220)
    buf = io.BytesIO()
    img.convert(mode).save(buf, "PNG")
    return buf.getvalue()

def photo():
    pixels = np.random.default_rng(0).integers(0, 255, (4000, 6000, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()

CASES = {"disc_5200": lambda: disc(5200, 0.12), "disc_6300": lambda: disc(6300, 0.35),
         "disc_8000": lambda: disc(8000, 0.35), "rgba_6300": lambda: disc(6300, 0.2, "RGBA"),
         "photo_40mp": photo}
out = {}
for name, make in CASES.items():
    data = make()
    gc.collect()
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    base = status("VmRSS:")
    try:
        kept = prepare_upload(data, target_fraction=0.13)
        result = "prepared"
    except ImageError as exc:
        kept, result = None, f"refused: {exc}"
    peak = status("VmHWM:") - base
    del data
    gc.collect()
    out[name] = {"result": result, "peak_mb": peak, "retained_mb": status("VmRSS:") - base + 0.0}
    del kept
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def measured():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["disc_5200", "disc_6300", "rgba_6300", "photo_40mp"])
def test_memory_preparing_an_upload_stays_bounded_and_leaves_only_small_arrays(measured, case):
    m = measured[case]
    assert m["result"] == "prepared", m
    assert m["peak_mb"] < PEAK_MB, m
    assert m["retained_mb"] < RETAINED_MB, m


def test_memory_a_picture_over_the_pixel_limit_is_refused_before_decoding(measured):
    m = measured["disc_8000"]
    assert m["result"].startswith("refused: Cannot use the uploaded picture") and "megapixels" in m["result"], m
    assert m["peak_mb"] < 50, m
