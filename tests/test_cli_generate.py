"""`python -m galaxy_vae generate`: writes the Milky Way page's lookalike grid as a readable PNG of the
requested size, identical for the same seed and identical to the library path the page uses.

Runs a seeded, untrained GalaxyVAE (decoder weights scaled up so that different latents decode to
different pictures) saved to a temporary checkpoint over 400 real sample galaxies
written to a temporary dataset (what is tested is the command's contract, not image quality).
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image

from galaxy_vae import cli
from galaxy_vae import lookalikes as mw
from galaxy_vae.catalogue import Catalogue, ModelSpace
from galaxy_vae.checkpoints import load_checkpoint, save_checkpoint
from galaxy_vae.cutouts import prepare_upload
from galaxy_vae.hdf5 import open_dataset, write_dataset
from galaxy_vae.models import build_model
from galaxy_vae.raster import grid_png
from galaxy_vae.sky import catalogue_sky


@pytest.fixture(scope="module")
def files(tmp_path_factory, sample):
    folder = tmp_path_factory.mktemp("generate")
    part = sample.take(np.linspace(0, len(sample) - 1, 400).astype(int))
    write_dataset(folder / "part.h5", part.images, part.labels, part.ids, part.class_names, source="test")
    for name, config in (("vae", None), ("dense", {"code_size": 64})):
        torch.manual_seed(0)
        model = build_model("galaxy_vae" if name == "vae" else "dense_ae", config)
        if name == "vae":  # untrained decoders give the same grey for every z: make z show
            with torch.no_grad():
                for param in model.dec_fc.parameters():
                    param.mul_(30.0)
        save_checkpoint(folder / f"{name}.safetensors", model, {"class_names": list(sample.class_names)})
    return folder


def generate(files, image, *extra) -> tuple[int, bytes | None]:
    out = files / "grid.png"
    out.unlink(missing_ok=True)
    code = cli.main(["generate", "--checkpoint", str(files / "vae.safetensors"), "--data", str(files / "part.h5"),
                     "--near", str(image), "--out", str(out), *map(str, extra)])
    return code, out.read_bytes() if out.exists() else None


@pytest.mark.parametrize("n, rows, cols", [(16, 4, 4), (5, 2, 3)])
def test_cli_generate_writes_png_of_requested_grid(files, milky_way_path, capsys, n, rows, cols):
    code, png = generate(files, milky_way_path, "-n", n, "--seed", 3)
    assert code == 0
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (cols * 64 * 2, rows * 64 * 2)
    out = capsys.readouterr().out
    assert f"{n} lookalikes of milky-way-face-on.webp in a {rows}x{cols} grid" in out
    assert out.count("nearest real galaxy") == n


def test_cli_generate_same_seed_same_grid_as_the_page_path(files, milky_way_path):
    _, first = generate(files, milky_way_path, "-n", 9, "--seed", 11, "--temperature", 1.5)
    _, again = generate(files, milky_way_path, "-n", 9, "--seed", 11, "--temperature", 1.5)
    _, other = generate(files, milky_way_path, "-n", 9, "--seed", 12, "--temperature", 1.5)
    assert first == again != other
    data = open_dataset(files / "part.h5")
    query = prepare_upload(milky_way_path, sky=catalogue_sky(data.images)).stored  # the default preparation
    cat = Catalogue(data, ModelSpace(load_checkpoint(files / "vae.safetensors")))
    assert first == grid_png(mw.sample_lookalikes(cat, query, 9, 1.5, 11).images)


def test_cli_generate_temperature_zero_repeats_the_mean(files, milky_way_path):
    _, png = generate(files, milky_way_path, "-n", 4, "--temperature", 0)
    img = np.asarray(Image.open(io.BytesIO(png)))
    side = img.shape[0] // 2
    tiles = [img[r * side:(r + 1) * side, c * side:(c + 1) * side] for r in range(2) for c in range(2)]
    assert all(np.array_equal(t, tiles[0]) for t in tiles)


def test_cli_generate_framing_and_sky_change_the_query(files, milky_way_path):
    plain = generate(files, milky_way_path)[1]
    assert generate(files, milky_way_path, "--framing", "auto")[1] != plain
    assert generate(files, milky_way_path, "--keep-sky")[1] != plain


@pytest.mark.parametrize("extra, message", [
    (["-n", "0"], "-n must be at least 1"),
    (["--temperature", "-1"], "--temperature must be a number >= 0"),
    (["--out-name", "grid.jpg"], "--out must end in .png"),
])
def test_cli_generate_refuses_bad_arguments(files, milky_way_path, capsys, extra, message):
    args = ["generate", "--checkpoint", str(files / "vae.safetensors"), "--data", str(files / "part.h5"),
            "--near", str(milky_way_path)]
    if extra[0] == "--out-name":
        args += ["--out", str(files / extra[1])]
    else:
        args += ["--out", str(files / "bad.png"), *extra]
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not (files / "bad.png").exists() and not (files / "grid.jpg").exists()


def test_cli_generate_refuses_a_model_without_posterior(files, milky_way_path, capsys):
    code = cli.main(["generate", "--checkpoint", str(files / "dense.safetensors"), "--data", str(files / "part.h5"),
                     "--near", str(milky_way_path), "--out", str(files / "none.png")])
    assert code == 2 and "variational" in capsys.readouterr().err
    assert not (files / "none.png").exists()


def test_cli_generate_unreadable_picture_is_one_message(files, capsys):
    (files / "notes.png").write_text("not a picture")
    code, png = generate(files, files / "notes.png")
    assert code == 2 and png is None
    assert "Cannot use notes.png" in capsys.readouterr().err


def test_cli_generate_help_and_defaults_match_the_page():
    args = cli.build_parser().parse_args(["generate", "--near", "x.png", "--out", "g.png"])
    assert (args.n, args.temperature, args.seed, args.framing) == (16, mw.DEFAULT_TEMPERATURE, 0, "none")
    assert args.n == mw.DEFAULT_SAMPLES
    out = subprocess.run([sys.executable, "-m", "galaxy_vae", "generate", "--help"], capture_output=True,
                         text=True, cwd=ROOT, check=True).stdout
    assert "--temperature" in out and "--near" in out and "|e| <= T" in out
