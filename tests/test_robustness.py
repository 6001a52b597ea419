"""evaluate --robustness: queries re-cut from raw frames, prepared as uploads, scored as a brute
force would (real sample frames)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from galaxy_vae.data import stratified_split
from galaxy_vae.hdf5 import open_dataset
from galaxy_vae.models import build_model
from galaxy_vae.robustness import FIELDS, VARIANTS, query_cutouts, ratios, robustness_report, variant_pictures
from galaxy_vae.sky import CATALOGUE_SKY, catalogue_sky


def _brute_macro_precision(query_x: np.ndarray, query_y: np.ndarray, base_x: np.ndarray, base_y: np.ndarray) -> float:
    per_class: dict[int, list[float]] = {}
    for x, y in zip(query_x, query_y):
        d = [float(((x - b) ** 2).sum()) for b in base_x]
        nearest = sorted(range(len(d)), key=lambda i: (d[i], i))[:10]
        per_class.setdefault(int(y), []).append(np.mean([base_y[i] == y for i in nearest]))
    return float(np.mean([np.mean(v) for v in per_class.values()]))


def _pixels(images: np.ndarray) -> np.ndarray:
    return images[:, 2:66, 2:66].reshape(len(images), -1).astype(np.float64) / 255


def test_standard_recut_is_the_catalogue_cutout(sample, frames_path):
    rows = np.arange(0, 6664, 700)
    q = query_cutouts(sample.ids[rows], frames_path, sky=None, workers=1)
    assert np.array_equal(q["standard"], sample.images[rows])
    assert not np.array_equal(q["fov_300"], sample.images[rows])


def test_variants_are_the_fields_asked_for(sample, frames_path):
    frame = Image.open(frames_path / f"{sample.ids[0]}.jpeg").convert("RGB")
    pictures = variant_pictures(frame, 30.0)
    for name, field in FIELDS.items():
        assert pictures[name].size == (round(field * 423 / 424),) * 2
    standard = np.asarray(pictures["standard"], dtype=np.float64)
    assert np.array_equal(np.asarray(pictures["sky"]), np.clip(np.rint((standard + 20) * 1.3), 0, 255))
    assert not np.array_equal(np.asarray(pictures["rotated"]), np.asarray(pictures["standard"]))


def test_report_equals_a_brute_force_computation(small_sample_path, frames_path):
    data = open_dataset(small_sample_path)
    report = robustness_report(None, data, frames_path, pixel=True)
    train, val = stratified_split(data.labels, 0.2, 0)
    queries = query_cutouts(data.ids[val], frames_path, sky=catalogue_sky(data.images[train]), workers=1)
    assert report["robustness_queries"] == len(val) == 24
    for v in VARIANTS:
        expected = _brute_macro_precision(_pixels(queries[v]), data.labels[val], _pixels(data.images[train]),
                                          data.labels[train])
        assert report["pixel_robustness"][v] == pytest.approx(expected, abs=1e-12), v
    assert ratios(report["pixel_robustness"])["standard"] == 1.0


def test_model_report_and_cli_json(small_sample_path, frames_path, tmp_path):
    from galaxy_vae.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = build_model("similarity", {"n_classes": 5}).eval()
    names = open_dataset(small_sample_path).class_names
    ckpt = save_checkpoint(tmp_path / "enc.safetensors", model, {"class_names": names})
    cmd = [sys.executable, "-m", "galaxy_vae", "evaluate", "--checkpoint", str(ckpt), "--data", str(small_sample_path),
           "--robustness", "--frames", str(frames_path), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out["robustness"]) == set(out["pixel_robustness"]) == set(VARIANTS)
    assert all(0 <= x <= 1 for x in out["robustness"].values())
    assert out["robustness_preparation"] == {"framing": "none", "sky_matched": True}
    assert "macro_precision_at_10" in out and "recon_mse" not in out  # an encoder has no decoder


def test_without_frames_robustness_is_skipped_and_says_why(small_sample_path, tmp_path):
    report = robustness_report(None, open_dataset(small_sample_path), tmp_path)
    assert report["robustness"] is None and "no raw frames" in report["robustness_skipped"]
    report = robustness_report(None, open_dataset(small_sample_path), None)
    assert report["robustness"] is None and "GALAXY_VAE_FRAMES" in report["robustness_skipped"]


def test_catalogue_sky_constant_is_the_samples(sample):
    assert tuple(catalogue_sky(sample.images, None)) == CATALOGUE_SKY
