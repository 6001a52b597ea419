"""The similarity encoder's losses and training (seconds, on a real subset of the sample)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from galaxy_vae.checkpoints import load_checkpoint, read_meta
from galaxy_vae.train_encoder import compact_labels, sampling_weights, supcon


def _brute_supcon(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    """The SupCon "L_out" loss written out as in Khosla et al. 2020, eq. 2."""
    total = 0.0
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in others)
        positives = [p for p in others if y[p] == y[i]]
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denominator) for p in positives) / len(positives)
    return total / len(z)


def test_supcon_equals_the_written_out_loss():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(8, 5, generator=g), dim=1)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    assert float(supcon(z, y, 0.5)) == pytest.approx(_brute_supcon(z, y, 0.5), rel=1e-5)


def test_supcon_is_lower_when_classes_are_together():
    y = torch.tensor([0, 0, 1, 1])
    together = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert supcon(together, y, 0.1) < supcon(mixed, y, 0.1)


def test_balanced_sampling_draws_each_class_equally_often():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    w = sampling_weights(labels, 1.0)
    assert w.sum() == pytest.approx(1.0)
    per_class = [w[labels == c].sum() for c in range(3)]
    assert per_class == pytest.approx([1 / 3] * 3)
    assert np.allclose(sampling_weights(labels, 0.0), 1 / len(labels))


def test_mirror_image_classes_train_as_one_morphology():
    labels, n = compact_labels(np.array([0, 1, 2, 3, 4, 5, 2]), [(1, 2)])
    assert n == 5 and labels.tolist() == [0, 1, 1, 2, 3, 4, 1]


def test_train_command_writes_a_similarity_checkpoint_with_robustness(small_sample_path, frames_path, tmp_path):
    out = tmp_path / "enc.safetensors"
    cmd = [sys.executable, "-m", "galaxy_vae", "train", "--model", "similarity", "--data", str(small_sample_path),
           "--frames", str(frames_path), "--epochs", "1", "--batch-size", "32", "--instance-weight", "0.5",
           "--fov-max", "2.2", "--quiet", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ckpt = load_checkpoint(out)
    meta = read_meta(out)
    assert meta["model"] == "similarity" and meta["augment_config"]["fov_max"] == 2.2
    assert "--instance-weight 0.5" in meta["command"] and "--frames" in meta["command"]
    assert set(meta["metrics"]["robustness"]) == {"standard", "fov_50", "fov_100", "fov_150", "fov_300", "fov_423",
                                                  "sky", "rotated"}
    assert meta["metrics"]["robustness_queries"] == 24  # 20 % of 20 galaxies in each of 6 classes
    z = ckpt.model.encode(torch.rand(3, 3, 64, 64))
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not hasattr(ckpt.model, "decode")


def test_training_without_the_frames_says_where_to_find_them(small_sample_path, tmp_path):
    cmd = [sys.executable, "-m", "galaxy_vae", "train", "--model", "similarity", "--data", str(small_sample_path),
           "--frames", str(tmp_path), "--epochs", "1", "--quiet", "--out", str(tmp_path / "x.safetensors")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "raw frames" in done.stderr and "--frames" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_the_encoder_moves_every_inputs_sky_as_uploads_are_moved(sample):
    """The encoder's own sky matching equals galaxy_vae.sky.match_sky on real galaxies to 1 DN
    (match_sky rounds to uint8 and averages the two middle values of an even ring), so a catalogue
    galaxy and an upload meet on one sky; and a galaxy under a brighter sky embeds where it does
    under its own."""
    from galaxy_vae.data import model_view
    from galaxy_vae.models import build_model
    from galaxy_vae.sky import border_sky, match_sky

    torch.manual_seed(0)
    model = build_model("similarity", {}).eval()
    images = model_view(sample.images[::400])  # (17, 64, 64, 3) uint8
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    matched = model.match_sky(x).permute(0, 2, 3, 1).numpy() * 255
    expected = np.stack([match_sky(im, model.config.sky) for im in images]).astype(np.float64)
    assert np.abs(matched - expected).max() <= 1 + 1e-4
    assert np.allclose(border_sky(matched), model.config.sky, atol=1)
    brighter = (x + 12 / 255).clamp(0, 1)  # a uniform sky offset, no clipping at these levels
    with torch.inference_mode():
        moved = (model.encode(brighter) - model.encode(x)).abs().max()
        model.config.sky = None  # without it the same offset moves the embedding (an untrained one a little)
        unmatched = (model.encode(brighter) - model.encode(x)).abs().max()
    assert moved < 1e-4 and unmatched > 10 * moved, (moved, unmatched)
